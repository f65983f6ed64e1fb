using InferenceMesh.Core;

namespace InferenceMesh.Client;

/// <summary>One hop of a planned route: the server and the blocks it runs for this session.</summary>
public sealed record PlannedHop(ServerSpan Server, BlockRange Blocks);
