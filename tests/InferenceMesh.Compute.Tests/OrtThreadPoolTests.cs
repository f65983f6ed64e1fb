using System.Runtime.CompilerServices;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Compute.Tests;

public sealed class OrtThreadPoolTests
{
    /// <summary>Other tests of this assembly create ONNX Runtime sessions directly; the shared pool exists only if it comes first.</summary>
    [ModuleInitializer]
    internal static void CreateTheSharedPoolBeforeAnySession() => _ = OrtThreadPool.IsAvailable;

    [Fact]
    public void SplitStagesRunOnTheOneSharedPoolAndPrintTheReferenceText()
    {
        Assert.True(OrtThreadPool.IsAvailable);
        Assert.Equal(Environment.ProcessorCount, OrtThreadPool.Threads);
        using var model = LocalModel.Open(TestModels.Stories260K, 5);
        Assert.Equal(7, model.Pipeline.Stages.Count);
        Assert.All(model.Pipeline.Stages, stage => Assert.True(((OrtStageExecutor)stage).UsesSharedThreadPool));
        Assert.Equal(TestModels.Stories260KReferenceText, string.Concat(model.Generate("", new GenerationOptions(Temperature: 0f, MaxPositions: 256))));
    }

    [Fact]
    public void ExecutorsThatDoNotAskKeepTheirOwnPool()
    {
        using var model = LocalModel.Open(TestModels.Stories260K, 2, ortOptions: new OrtExecutorOptions(IntraOpThreads: 1, AllowSpinning: false));
        Assert.All(model.Pipeline.Stages, stage => Assert.False(((OrtStageExecutor)stage).UsesSharedThreadPool));
        Assert.Equal(TestModels.Stories260KReferenceText, string.Concat(model.Generate("", new GenerationOptions(Temperature: 0f, MaxPositions: 256))));
    }

    [Fact]
    public void ConfiguringThePoolAfterItExistsWithOtherSettingsIsATypedError()
    {
        Assert.True(OrtThreadPool.IsAvailable);
        OrtThreadPool.Configure(OrtThreadPool.Threads, OrtThreadPool.Spinning);
        var error = Assert.Throws<MeshException>(() => OrtThreadPool.Configure(OrtThreadPool.Threads + 1, OrtThreadPool.Spinning));
        Assert.Equal(MeshErrorCode.InvalidArgument, error.Code);
        Assert.Contains("already exists", error.Message);
    }
}
