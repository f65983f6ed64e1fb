namespace InferenceMesh.Protocol;

/// <summary>Size limits the codec enforces before it takes memory.</summary>
/// <param name="MaxFrameBytes">Largest frame body (the MessagePack map) accepted or sent.</param>
/// <param name="MaxRank">Largest tensor rank.</param>
/// <param name="MaxRouteHops">Longest chained route.</param>
/// <param name="MaxStringBytes">Longest string field (session id, model id, address, message), in characters.</param>
public sealed record StageLimits(int MaxFrameBytes = 64 << 20, int MaxRank = 4, int MaxRouteHops = 64, int MaxStringBytes = 4096);
