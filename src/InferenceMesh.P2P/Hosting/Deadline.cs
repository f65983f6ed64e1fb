namespace InferenceMesh.P2P.Hosting;

/// <summary>A token cancelled by either of two tokens or once <c>delay</c> has passed on a <see cref="TimeProvider"/>, so timeouts follow the host's clock.</summary>
internal sealed class Deadline : IDisposable
{
    private readonly CancellationTokenSource _timer;
    private readonly CancellationTokenSource _linked;

    public Deadline(TimeSpan delay, TimeProvider time, CancellationToken first, CancellationToken second = default)
    {
        _timer = new CancellationTokenSource(delay, time);
        _linked = CancellationTokenSource.CreateLinkedTokenSource(first, second, _timer.Token);
    }

    public CancellationToken Token => _linked.Token;

    public void Dispose()
    {
        _linked.Dispose();
        _timer.Dispose();
    }
}
