namespace InferenceMesh.P2P.Dht;

/// <summary>Outcome of <see cref="RoutingTable.TryAdd"/>.</summary>
public enum RoutingAddResult
{
    /// <summary>New entry.</summary>
    Added,
    /// <summary>Already present: last-seen time and addresses refreshed.</summary>
    Updated,
    /// <summary>Its IP group already fills its quota (counted in <see cref="DhtMetrics.RejectedDiversity"/>).</summary>
    RejectedDiversity,
    /// <summary>The bucket is full of live peers; the candidate waits in the replacement cache.</summary>
    BucketFull,
    /// <summary>The local peer itself, never stored.</summary>
    Self,
}
