namespace InferenceMesh.Client;

/// <summary>How a step travels: chained (each server pushes to the next) or relayed (every hop returns to the client).</summary>
public enum RouteMode
{
    /// <summary>The client sends one step; each server pushes its output to the next and also reports it back.</summary>
    Chained,

    /// <summary>The client sends each hop its input and waits for its output (more round trips, no server-to-server links).</summary>
    Relayed,
}
