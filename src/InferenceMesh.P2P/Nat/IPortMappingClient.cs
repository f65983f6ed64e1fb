namespace InferenceMesh.P2P.Nat;

/// <summary>One port-mapping protocol's client. Every method throws <see cref="PortMappingException"/> on failure and is safe to cancel.</summary>
public interface IPortMappingClient
{
    /// <summary>The protocol spoken.</summary>
    PortMappingProtocol Protocol { get; }

    /// <summary>
    /// Asks the gateway to forward TCP <paramref name="suggestedExternalPort"/> (or another port it picks) to <paramref name="internalPort"/>
    /// for <paramref name="lifetime"/>. Asking again for the same internal port renews the mapping, or makes it again if the gateway forgot it.
    /// </summary>
    Task<PortMapping> MapAsync(int internalPort, int suggestedExternalPort, TimeSpan lifetime, CancellationToken cancellationToken);

    /// <summary>Renews <paramref name="mapping"/> for <paramref name="lifetime"/>, making it again (possibly on another external port) when the gateway forgot it.</summary>
    Task<PortMapping> RenewAsync(PortMapping mapping, TimeSpan lifetime, CancellationToken cancellationToken);

    /// <summary>Deletes a mapping this client made.</summary>
    Task UnmapAsync(PortMapping mapping, CancellationToken cancellationToken);
}
