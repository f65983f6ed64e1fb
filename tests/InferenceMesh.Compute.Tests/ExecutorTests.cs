using Google.Protobuf;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Compute.Tests;

public sealed class ExecutorTests
{
    private static OrtStageExecutor BlockStage(OrtExecutorOptions? options = null)
    {
        var model = OnnxModelFile.Load(Path.Combine(TestModels.SmallSynthetic, ModelStore.ModelFile));
        var stage = GraphSplitter.Split(model, BlockRange.SplitEvenly(4, 2))[1];
        return new OrtStageExecutor(stage.Descriptor, stage.Model.ToByteArray(), options);
    }

    private static TensorData Activation(int steps, int width = 48) => TensorData.FromFloats([1, steps, width], new float[steps * width]);

    [Fact]
    public void KeepsOneCachePerSession()
    {
        using var stage = BlockStage();
        stage.Run("a", Activation(3), 0);
        stage.Run("b", Activation(1), 0);
        stage.Run("a", Activation(2), 3);
        Assert.Equal(5, stage.CachedLength("a"));
        Assert.Equal(1, stage.CachedLength("b"));
        stage.CloseSession("a");
        Assert.Equal(0, stage.CachedLength("a"));
    }

    [Fact]
    public void WrongWidthIsATypedErrorAndTheSessionSurvives()
    {
        using var stage = BlockStage();
        stage.Run("a", Activation(2), 0);
        var error = Assert.Throws<MeshException>(() => stage.Run("a", Activation(1, 47), 2));
        Assert.Equal(MeshErrorCode.ShapeMismatch, error.Code);
        Assert.Equal(3, stage.Run("a", Activation(1), 2).Shape[1] + 2);
    }

    [Fact]
    public void StepThatDoesNotFollowTheCacheIsRefused()
    {
        using var stage = BlockStage();
        stage.Run("a", Activation(2), 0);
        Assert.Equal(MeshErrorCode.ShapeMismatch, Assert.Throws<MeshException>(() => stage.Run("a", Activation(1), 5)).Code);
    }

    [Fact]
    public void SessionLimitIsEnforced()
    {
        using var stage = BlockStage(new OrtExecutorOptions(MaxSessions: 2));
        stage.Run("a", Activation(1), 0);
        stage.Run("b", Activation(1), 0);
        Assert.Equal(MeshErrorCode.LimitExceeded, Assert.Throws<MeshException>(() => stage.Run("c", Activation(1), 0)).Code);
        stage.CloseSession("a");
        stage.Run("c", Activation(1), 0);
    }

    [Fact]
    public void ContextLimitIsEnforced()
    {
        using var stage = BlockStage(new OrtExecutorOptions(MaxSequence: 4));
        stage.Run("a", Activation(3), 0);
        Assert.Equal(MeshErrorCode.ContextOverflow, Assert.Throws<MeshException>(() => stage.Run("a", Activation(2), 3)).Code);
    }
}
