using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;

namespace InferenceMesh.Client;

/// <summary>One hop of a planned route: the server (as its span record announces it) and the blocks it runs for this session.</summary>
public sealed record PlannedHop(ServerInfo Server, BlockRange Blocks);
