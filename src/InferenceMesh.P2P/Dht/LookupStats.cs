namespace InferenceMesh.P2P.Dht;

/// <summary>Cost and depth of one iterative lookup.</summary>
/// <param name="Messages">Requests sent.</param>
/// <param name="Failures">Requests that failed or timed out.</param>
/// <param name="Hops">
/// Sequential round trips needed to learn the answer: peers from the local table are at depth 0, peers
/// named in a depth-d peer's answer at depth d+1. For a peer lookup, the depth at which the target was
/// learned; for a value or provider lookup, one more than the depth of the first peer that returned it;
/// for a closest-peers lookup, the depth of the closest peer. -1 when nothing was found.
/// </param>
public readonly record struct LookupStats(int Messages, int Failures, int Hops);
