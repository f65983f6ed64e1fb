namespace InferenceMesh.P2P.Nat;

/// <summary>
/// Keeps one TCP port forwarded by the home gateway: at start it tries every protocol of <see cref="PortMapperOptions.Protocols"/>
/// in parallel and keeps the first in that order that worked, renews the lease every <see cref="PortMapperOptions.RenewInterval"/>
/// (which also remakes a mapping the gateway forgot), starts over with every protocol when a renewal fails, and deletes the
/// mapping when disposed. <see cref="Changed"/> reports each new, moved or lost mapping. Thread-safe.
/// </summary>
public sealed class PortMapper : IAsyncDisposable
{
    private readonly PortMapperOptions _options;
    private readonly int _internalPort;
    private readonly IReadOnlyList<IPortMappingClient> _clients;
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource<PortMapping?> _first = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _loop;
    private IPortMappingClient? _client;
    private PortMapping? _current;
    private int _disposed;

    /// <summary>Starts mapping <paramref name="internalPort"/> in the background with the protocols' own clients.</summary>
    public PortMapper(int internalPort, PortMapperOptions options)
        : this(internalPort, options, options.Protocols.Select(p => Create(p, options.Client)).ToList())
    {
    }

    /// <summary>Starts mapping <paramref name="internalPort"/> in the background with the given clients (tried in parallel, the earlier preferred); disposes the disposable ones.</summary>
    public PortMapper(int internalPort, PortMapperOptions options, IReadOnlyList<IPortMappingClient> clients)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(internalPort, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(internalPort, 65535);
        if (options.RenewInterval <= TimeSpan.Zero || options.RenewInterval >= options.Lifetime)
            throw new ArgumentOutOfRangeException(nameof(options), "RenewInterval must be positive and shorter than Lifetime");
        _options = options;
        _internalPort = internalPort;
        _clients = clients;
        _loop = Task.Run(RunAsync);
    }

    /// <summary>The mapping in force, or null while none is.</summary>
    public PortMapping? Current => Volatile.Read(ref _current);

    /// <summary>Completes after the first round of attempts with its mapping, or null when no protocol worked then.</summary>
    public Task<PortMapping?> FirstAttempt => _first.Task;

    /// <summary>Raised (on a pool thread) with the old and the new mapping whenever the external endpoint appears, moves or goes.</summary>
    public event Action<PortMapping?, PortMapping?>? Changed;

    private static IPortMappingClient Create(PortMappingProtocol protocol, PortMappingClientOptions options) => protocol switch
    {
        PortMappingProtocol.Upnp => new UpnpClient(options),
        PortMappingProtocol.NatPmp => new NatPmpClient(options),
        PortMappingProtocol.Pcp => new PcpClient(options),
        _ => throw new ArgumentOutOfRangeException(nameof(protocol), protocol, "unknown port-mapping protocol"),
    };

    private async Task RunAsync()
    {
        var token = _stopping.Token;
        try
        {
            while (!token.IsCancellationRequested)
            {
                var next = await (_client is null ? MapAnyAsync(token) : RenewAsync(token)).ConfigureAwait(false);
                Publish(next);
                _first.TrySetResult(next);
                await Task.Delay(_options.RenewInterval, _options.Time, token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        finally
        {
            _first.TrySetResult(null);
        }
    }

    private async Task<PortMapping?> MapAnyAsync(CancellationToken token)
    {
        var attempts = _clients.Select(c => TryAsync(c, () => c.MapAsync(_internalPort, _internalPort, _options.Lifetime, token))).ToList();
        var results = await Task.WhenAll(attempts).ConfigureAwait(false);
        var chosen = Array.FindIndex(results, r => r is not null);
        if (chosen < 0)
            return null;
        _client = _clients[chosen];
        // A gateway speaking several protocols shares one rule table: another protocol's mapping on the same external
        // port is the same rule (deleting it would delete ours); one on another port is deleted.
        for (var i = chosen + 1; i < results.Length; i++)
            if (results[i] is { } extra && extra.ExternalPort != results[chosen]!.ExternalPort)
                await TryUnmapAsync(_clients[i], extra, token).ConfigureAwait(false);
        return results[chosen];
    }

    private async Task<PortMapping?> RenewAsync(CancellationToken token)
    {
        var client = _client!;
        var renewed = await TryAsync(client, () => client.RenewAsync(_current!, _options.Lifetime, token)).ConfigureAwait(false);
        if (renewed is not null)
            return renewed;
        _client = null;
        return await MapAnyAsync(token).ConfigureAwait(false);
    }

    // The attempt is started inside the try: a client may throw before returning its task (no default gateway).
    private async Task<PortMapping?> TryAsync(IPortMappingClient client, Func<Task<PortMapping>> attempt)
    {
        try
        {
            return await attempt().ConfigureAwait(false);
        }
        catch (PortMappingException e)
        {
            _options.Log?.Invoke($"port mapping by {client.Protocol} failed: {e.Message}");
            return null;
        }
    }

    private async Task TryUnmapAsync(IPortMappingClient client, PortMapping mapping, CancellationToken token)
    {
        try
        {
            await client.UnmapAsync(mapping, token).ConfigureAwait(false);
            _options.Log?.Invoke($"port mapping deleted: {mapping}");
        }
        catch (PortMappingException e)
        {
            _options.Log?.Invoke($"deleting the port mapping by {client.Protocol} failed: {e.Message}");
        }
    }

    private void Publish(PortMapping? next)
    {
        var old = Interlocked.Exchange(ref _current, next);
        if (old?.ExternalAddress.Equals(next?.ExternalAddress) == true && old.ExternalPort == next!.ExternalPort)
            return;
        if (old is null && next is null)
            return;
        _options.Log?.Invoke(next is null ? $"port mapping lost: {old}" : $"port mapped: {next}");
        Changed?.Invoke(old, next);
    }

    /// <summary>Stops renewing and deletes the mapping (waiting at most the clients' own timeouts); errors are logged, not thrown.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        if (_current is { } mapping && _client is { } client)
            await TryUnmapAsync(client, mapping, CancellationToken.None).ConfigureAwait(false);
        Publish(null);
        foreach (var c in _clients.OfType<IDisposable>())
            c.Dispose();
        _stopping.Dispose();
    }
}
