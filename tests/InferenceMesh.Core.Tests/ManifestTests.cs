using System.Text;
using InferenceMesh.Core;

namespace InferenceMesh.Core.Tests;

public sealed class ManifestTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("manifest-test").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private Manifest Sample(string headSha)
    {
        var activation = new TensorInfo("h", DType.Float32, ["batch", "sequence", "64"]);
        return new Manifest(1, "m", 2, new ModelConfig(64, 172, 2, 8, 4, 512, 512, 1e-5f, 10000f), "abc", "tokenizer.bin",
        [
            new StageDescriptor(StageKind.Head, null, "head.onnx", headSha, "input_ids", "h", [new TensorInfo("input_ids", DType.Int64, ["batch", "sequence"])], [activation], [], []),
            new StageDescriptor(StageKind.Blocks, new BlockRange(0, 2), "blocks.onnx", "00", "h", "h2", [activation], [activation], ["position_ids"], [new StateBinding("past", "present")]),
        ]);
    }

    [Fact]
    public void SavedManifestLoadsBackWithTheSameModelId()
    {
        var manifest = Sample("11");
        manifest.Save(_directory);
        var loaded = Manifest.Load(_directory, verifyFiles: false);
        Assert.Equal(Encoding.UTF8.GetString(manifest.CanonicalBytes()), Encoding.UTF8.GetString(loaded.CanonicalBytes()));
        Assert.Equal(manifest.ModelId, loaded.ModelId);
        Assert.Equal(new BlockRange(0, 2), loaded.Stages[1].Blocks);
    }

    [Fact]
    public void ModelIdChangesWithAnyStageHash()
    {
        Assert.NotEqual(Sample("11").ModelId, Sample("12").ModelId);
        Assert.Equal(64, Sample("11").ModelId.Length);
    }

    [Fact]
    public void TamperedManifestIsRefused()
    {
        Sample("11").Save(_directory);
        var path = Path.Combine(_directory, Manifest.FileName);
        File.WriteAllText(path, File.ReadAllText(path).Replace("\"head.onnx\"", "\"evil.onnx\""));
        var error = Assert.Throws<MeshException>(() => Manifest.Load(_directory, verifyFiles: false));
        Assert.Equal(MeshErrorCode.IntegrityMismatch, error.Code);
    }

    [Fact]
    public void StageFileWithOtherBytesIsRefused()
    {
        File.WriteAllText(Path.Combine(_directory, "head.onnx"), "not the stage");
        File.WriteAllText(Path.Combine(_directory, "blocks.onnx"), "x");
        Sample(Manifest.Sha256Hex(Path.Combine(_directory, "head.onnx"))).Save(_directory);
        var error = Assert.Throws<MeshException>(() => Manifest.Load(_directory));
        Assert.Equal(MeshErrorCode.IntegrityMismatch, error.Code);
        Assert.Contains("blocks.onnx", error.Message);
    }
}
