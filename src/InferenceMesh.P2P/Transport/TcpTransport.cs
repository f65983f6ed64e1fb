using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;

namespace InferenceMesh.P2P.Transport;

/// <summary>
/// TCP over <c>/ip4|ip6/…/tcp/…</c> multiaddrs, with Nagle disabled. Dials <c>/dns|dns4|dns6/…/tcp/…</c> too,
/// trying each resolved address of the family asked for in turn; listens only on IP addresses. Made with reusePort,
/// it dials from a listen port (as go-libp2p's reuseport transport does), so that behind an endpoint-independent NAT
/// the address peers observe is the one a hole punch comes from.
/// </summary>
public sealed class TcpTransport : ITransport
{
    private readonly MemoryPool<byte> _pool;
    private readonly bool _reusePort;
    private readonly List<IPEndPoint> _listening = [];

    /// <param name="pool">Buffer pool for the socket pipes; <see cref="MemoryPool{T}.Shared"/> when null.</param>
    /// <param name="reusePort">
    /// Mark listeners SO_REUSEADDR/SO_REUSEPORT (after binding, so <c>tcp/0</c> still gets a port of its own) so a
    /// hole punch can dial from the listen port (<see cref="DialFromAsync"/>).
    /// </param>
    public TcpTransport(MemoryPool<byte>? pool = null, bool reusePort = false)
    {
        _pool = pool ?? MemoryPool<byte>.Shared;
        _reusePort = reusePort;
    }

    /// <summary>Whether listeners share their port with <see cref="DialFromAsync"/>.</summary>
    public bool ReusesPort => _reusePort;

    /// <summary>
    /// Connects to <paramref name="remote"/> from <paramref name="local"/> (a listen end point of this transport made
    /// with reusePort), for TCP simultaneous open. Throws <see cref="P2PException"/> (ConnectionClosed). Safe to cancel.
    /// </summary>
    public async ValueTask<ITransportConnection> DialFromAsync(IPEndPoint local, IPEndPoint remote, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(remote);
        var socket = new Socket(remote.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            Reuse(socket);
            socket.Bind(local);
            await socket.ConnectAsync(remote, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new P2PException(P2PErrorCode.ConnectionClosed, $"TCP connect from {local} to {remote} failed: {e.SocketErrorCode}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new TcpConnection(socket, _pool);
    }

    private static void Reuse(Socket socket)
    {
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        if (OperatingSystem.IsLinux())
            socket.SetRawSocketOption(SolSocket, SoReusePort, BitConverter.GetBytes(1));
    }

    // Linux's SOL_SOCKET and SO_REUSEPORT: .NET has no name for SO_REUSEPORT.
    private const int SolSocket = 1;
    private const int SoReusePort = 15;

    public bool CanHandle(Multiaddr address) => address.TryGetTcpEndPoint() is not null || address.TryGetDnsTcpAddress() is not null;

    /// <summary>Connects to the address (resolving a DNS name first). Throws <see cref="P2PException"/> (DialFailed, ConnectionClosed). Safe to cancel.</summary>
    public async ValueTask<ITransportConnection> DialAsync(Multiaddr address, CancellationToken cancellationToken)
    {
        if (address.TryGetTcpEndPoint() is { } ep)
            return await ConnectAsync(ep, address, cancellationToken).ConfigureAwait(false);
        var (host, family, port) = address.TryGetDnsTcpAddress()
            ?? throw new P2PException(P2PErrorCode.NoTransport, $"TCP cannot dial {address}");
        IPAddress[] resolved;
        try
        {
            resolved = await Dns.GetHostAddressesAsync(host, family, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            throw new P2PException(P2PErrorCode.DialFailed, $"cannot resolve {host} for {address}: {e.SocketErrorCode}", e);
        }
        if (resolved.Length == 0)
            throw new P2PException(P2PErrorCode.DialFailed, $"{host} has no {(family == AddressFamily.Unspecified ? "IP" : family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address ({address})");
        P2PException? last = null;
        foreach (var ip in resolved)
        {
            try
            {
                return await ConnectAsync(new IPEndPoint(ip, port), address, cancellationToken).ConfigureAwait(false);
            }
            catch (P2PException e)
            {
                last = e;
            }
        }
        throw new P2PException(P2PErrorCode.DialFailed, $"no address of {host} took the connection ({resolved.Length} tried): {last!.Message}", last);
    }

    private async ValueTask<ITransportConnection> ConnectAsync(IPEndPoint ep, Multiaddr address, CancellationToken cancellationToken)
    {
        if (ReuseLocal(ep) is { } local)
        {
            try
            {
                return await DialFromAsync(local, ep, cancellationToken).ConfigureAwait(false);
            }
            catch (P2PException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse or SocketError.AddressNotAvailable })
            {
                // That four-tuple is taken (a connection to the same end point, or one in TIME_WAIT): any port will do.
            }
        }
        var socket = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(ep, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new P2PException(P2PErrorCode.ConnectionClosed, $"TCP connect to {address} ({ep}) failed: {e.SocketErrorCode}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new TcpConnection(socket, _pool);
    }

    /// <summary>
    /// The listen end point to dial <paramref name="remote"/> from, or null (no reusePort, no listener of its family and scope,
    /// or the remote could be this very listener, which would connect the socket to itself).
    /// </summary>
    private IPEndPoint? ReuseLocal(IPEndPoint remote)
    {
        if (!_reusePort)
            return null;
        IPEndPoint? local;
        lock (_listening)
        {
            local = _listening.FirstOrDefault(l => l.AddressFamily == remote.AddressFamily
                && (l.Address.Equals(IPAddress.Any) || l.Address.Equals(IPAddress.IPv6Any) || IPAddress.IsLoopback(l.Address) == IPAddress.IsLoopback(remote.Address)));
        }
        if (local is null || local.Port != remote.Port)
            return local;
        var own = IPAddress.IsLoopback(remote.Address) || remote.Address.Equals(local.Address)
            || System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
                .SelectMany(i => i.GetIPProperties().UnicastAddresses).Any(u => u.Address.Equals(remote.Address));
        return own ? null : local;
    }

    public ValueTask<ITransportListener> ListenAsync(Multiaddr address, CancellationToken cancellationToken)
    {
        var ep = address.TryGetTcpEndPoint()
            ?? throw new P2PException(P2PErrorCode.NoTransport, $"TCP cannot listen on {address}");
        var socket = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(ep);
            if (_reusePort)
                Reuse(socket);
            socket.Listen(512);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new P2PException(P2PErrorCode.NoTransport, $"cannot listen on {address}: {e.SocketErrorCode}", e);
        }
        var bound = (IPEndPoint)socket.LocalEndPoint!;
        lock (_listening) _listening.Add(bound);
        return ValueTask.FromResult<ITransportListener>(new TcpListener(socket, _pool, () => { lock (_listening) _listening.Remove(bound); }));
    }

    private sealed class TcpListener(Socket socket, MemoryPool<byte> pool, Action closed) : ITransportListener
    {
        public Multiaddr ListenAddress { get; } = Multiaddr.FromTcpEndPoint((IPEndPoint)socket.LocalEndPoint!);

        public async ValueTask<ITransportConnection> AcceptAsync(CancellationToken cancellationToken)
        {
            try
            {
                var s = await socket.AcceptAsync(cancellationToken).ConfigureAwait(false);
                s.NoDelay = true;
                return new TcpConnection(s, pool);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                throw new P2PException(P2PErrorCode.ConnectionClosed, $"listener {ListenAddress} closed", e);
            }
        }

        public ValueTask DisposeAsync()
        {
            closed();
            socket.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

internal sealed class TcpConnection : ITransportConnection
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private int _disposed;

    public TcpConnection(Socket socket, MemoryPool<byte> pool)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
        Input = PipeReader.Create(_stream, new StreamPipeReaderOptions(pool, bufferSize: 256 * 1024, minimumReadSize: 64 * 1024, leaveOpen: true));
        Output = PipeWriter.Create(_stream, new StreamPipeWriterOptions(pool, minimumBufferSize: 65536, leaveOpen: true));
        LocalAddress = Multiaddr.FromTcpEndPoint((IPEndPoint)socket.LocalEndPoint!);
        RemoteAddress = Multiaddr.FromTcpEndPoint((IPEndPoint)socket.RemoteEndPoint!);
    }

    public PipeReader Input { get; }
    public PipeWriter Output { get; }
    public Multiaddr LocalAddress { get; }
    public Multiaddr RemoteAddress { get; }

    public void ShutdownWrite()
    {
        try { _socket.Shutdown(SocketShutdown.Send); } catch (SocketException) { } catch (ObjectDisposedException) { }
    }

    public void Abort()
    {
        try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        _socket.Close();
    }

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return ValueTask.CompletedTask;
        Abort();
        Input.Complete();
        try
        {
            // The socket is closed: completing with an error discards what is left (and returns its pooled
            // buffers) instead of writing it, which would fail and keep them.
            Output.Complete(new ObjectDisposedException(nameof(TcpConnection)));
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
        }
        _stream.Dispose();
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
