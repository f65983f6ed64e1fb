namespace InferenceMesh.P2P;

/// <summary>One <c>/proto/value</c> part of a <see cref="Multiaddr"/>; <see cref="Value"/> is the binary value.</summary>
public readonly record struct MultiaddrComponent(MultiaddrProtocol Protocol, ReadOnlyMemory<byte> Value)
{
    /// <summary>The value as multiaddr text (empty for protocols without a value).</summary>
    public string ValueText => Multiaddr.ValueToText(Protocol, Value.Span);
}
