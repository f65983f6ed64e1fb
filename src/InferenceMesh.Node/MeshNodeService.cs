using Microsoft.Extensions.Hosting;

namespace InferenceMesh.Node;

/// <summary>
/// A <see cref="MeshNode"/> as an <see cref="IHostedService"/>: started with the generic host, shut down in
/// order when the host stops. Register with <c>services.AddHostedService(_ => new MeshNodeService(options))</c>.
/// </summary>
public sealed class MeshNodeService(MeshNodeOptions options) : IHostedService, IAsyncDisposable
{
    private MeshNode? _node;

    /// <summary>The running node; null before <see cref="StartAsync"/> and after <see cref="StopAsync"/>.</summary>
    public MeshNode? Node => _node;

    /// <summary>Starts the node. Safe to cancel.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (_node is not null) throw new InvalidOperationException("the mesh node service is already started");
        _node = await MeshNode.StartAsync(options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Shuts the node down in order (see <see cref="MeshNode.DisposeAsync"/>); the token is not observed, since a half-stopped node would leave its span announced.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _node, null) is { } node) await node.DisposeAsync().ConfigureAwait(false);
    }

    public ValueTask DisposeAsync() => new(StopAsync(CancellationToken.None));
}
