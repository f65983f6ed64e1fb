using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.Protocol;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Node.Tests;

/// <summary>A session opened with <see cref="OpenSession.KeepOutputs"/>: receipts for steps pushed on, kept outputs fetched back, typed refusals.</summary>
public sealed class KeptOutputsTests : IAsyncLifetime
{
    private readonly InMemoryMesh _mesh = new();
    private InMemoryMesh.MeshNode _first = null!;
    private InMemoryMesh.MeshNode _second = null!;
    private StageChannel _toFirst = null!;
    private StageChannel _toSecond = null!;
    private string _modelId = "";

    public async Task InitializeAsync()
    {
        _first = _mesh.AddNode(MeshModels.Stories260KPerBlock, new BlockRange(0, 2));
        _second = _mesh.AddNode(MeshModels.Stories260KPerBlock, new BlockRange(2, 5));
        _modelId = _first.Span.Manifest.ModelId;
        _toFirst = await _mesh.ConnectorFor("client").ConnectAsync(_first.PeerId, [], default);
        _toSecond = await _mesh.ConnectorFor("client").ConnectAsync(_second.PeerId, [], default);
        await _toFirst.SendAsync(new OpenSession(1, "a", _modelId, new BlockRange(0, 2), 64, KeepOutputs: true));
        Assert.IsType<SessionOpened>(await Next(_toFirst));
        await _toSecond.SendAsync(new OpenSession(2, "b", _modelId, new BlockRange(2, 5), 64));
        Assert.IsType<SessionOpened>(await Next(_toSecond));
    }

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    private static async Task<StageMessage> Next(StageChannel channel) =>
        (await channel.ReceiveAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)))!;

    private static TensorData Activation(int steps, int seed) =>
        TensorData.FromFloats([1, steps, 64], Enumerable.Range(0, steps * 64).Select(i => ((i * 31 + seed) % 13) * 0.05f).ToArray());

    private Step Chained(ulong id, int start, int steps) =>
        new(id, "a", start, Activation(steps, (int)id), [new RouteHop(_second.PeerId, [], "b")]);

    [Fact]
    public async Task AStepPushedOnIsAnsweredWithAReceiptAndItsOutputIsFetchedBackAsTheNextServerGotIt()
    {
        var receipts = new List<StepReceipt>();
        var pushed = new List<StepCommitment>();
        foreach (var (start, steps) in new[] { (0, 3), (3, 1), (4, 1) })
        {
            await _toFirst.SendAsync(Chained((ulong)(10 + start), start, steps));
            var receipt = Assert.IsType<StepReceipt>(await Next(_toFirst));
            Assert.Equal((2, steps), (receipt.BlockEnd, receipt.Positions));
            receipts.Add(receipt);
            var result = Assert.IsType<StepResult>(await Next(_toSecond));
            Assert.Equal(5, result.BlockEnd);
            pushed.Add(result.Commitment!);
        }
        // The next server signed, as its input, exactly the output the first signed in its receipt.
        Assert.Equal(receipts.Select(r => Convert.ToHexString(r.Commitment!.OutputHash)), pushed.Select(c => Convert.ToHexString(c.InputHash)));

        var start2 = 0;
        foreach (var receipt in receipts)
        {
            await _toFirst.SendAsync(new FetchOutputs(99, "a", start2, receipt.Positions));
            var fetched = Assert.IsType<StepResult>(await Next(_toFirst));
            Assert.Equal((99UL, 2), (fetched.StepId, fetched.BlockEnd));
            Assert.Equal(new long[] { 1, receipt.Positions, 64 }, fetched.Activation.Shape);
            Assert.Equal(receipt.Commitment!.OutputHash, StepCommitment.Hash(fetched.Activation));
            start2 += receipt.Positions;
        }
        // One fetch across steps is the same bytes as the pieces.
        await _toFirst.SendAsync(new FetchOutputs(100, "a", 2, 3));
        Assert.Equal(new long[] { 1, 3, 64 }, Assert.IsType<StepResult>(await Next(_toFirst)).Activation.Shape);
    }

    [Fact]
    public async Task AStepNotPushedOnStillReturnsItsOutputAndIsKept()
    {
        await _toFirst.SendAsync(new Step(20, "a", 0, Activation(2, 1), []));
        var result = Assert.IsType<StepResult>(await Next(_toFirst));
        await _toFirst.SendAsync(new FetchOutputs(21, "a", 0, 2));
        Assert.Equal(result.Activation.Bytes.ToArray(), Assert.IsType<StepResult>(await Next(_toFirst)).Activation.Bytes.ToArray());
    }

    [Fact]
    public async Task FetchesOfPositionsNotKeptOfASessionThatKeepsNothingOrFromAnotherStreamAreRefused()
    {
        await _toFirst.SendAsync(Chained(30, 0, 2));
        Assert.IsType<StepReceipt>(await Next(_toFirst));
        Assert.IsType<StepResult>(await Next(_toSecond));

        await _toFirst.SendAsync(new FetchOutputs(31, "a", 1, 2));
        var beyond = Assert.IsType<StageError>(await Next(_toFirst));
        Assert.Equal((StageErrorCode.ShapeMismatch, 31UL), (beyond.Code, beyond.RequestId));
        Assert.Contains("0..2", beyond.Message);
        await _toFirst.SendAsync(new FetchOutputs(32, "a", 0, 0));
        Assert.Equal(StageErrorCode.ShapeMismatch, Assert.IsType<StageError>(await Next(_toFirst)).Code);
        await _toFirst.SendAsync(new FetchOutputs(33, "a", 0, 1 << 20));
        Assert.Equal(StageErrorCode.LimitExceeded, Assert.IsType<StageError>(await Next(_toFirst)).Code);

        await _toSecond.SendAsync(new FetchOutputs(34, "b", 0, 1));
        var notKept = Assert.IsType<StageError>(await Next(_toSecond));
        Assert.Equal(StageErrorCode.Malformed, notKept.Code);
        Assert.Contains("not opened to keep", notKept.Message);

        await using var other = await _mesh.ConnectorFor("other").ConnectAsync(_first.PeerId, [], default);
        await other.SendAsync(new FetchOutputs(35, "a", 0, 1));
        Assert.Equal(StageErrorCode.UnknownSession, Assert.IsType<StageError>(await Next(other)).Code);

        // The session is undisturbed.
        await _toFirst.SendAsync(new FetchOutputs(36, "a", 0, 2));
        Assert.IsType<StepResult>(await Next(_toFirst));
    }

    [Fact]
    public async Task KeptOutputsAreCountedInTheKvBudgetAndFreedWithTheSession()
    {
        var blocks = new BlockRange(0, 2);
        Assert.Equal(_first.Span.KvBytesForSession(blocks, 64) + 64L * 64 * sizeof(float), _first.Server.ReservedKvBytes);
        Assert.Equal(_second.Span.KvBytesForSession(new BlockRange(2, 5), 64), _second.Server.ReservedKvBytes);
        await _toFirst.SendAsync(Chained(40, 0, 4));
        Assert.IsType<StepReceipt>(await Next(_toFirst));
        await _toFirst.SendAsync(new CloseSession("a"));
        await Poll.UntilAsync(() => _first.Server.SessionCount == 0, "the session to close");
        Assert.Equal(0, _first.Server.ReservedKvBytes);
    }
}
