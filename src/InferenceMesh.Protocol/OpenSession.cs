using InferenceMesh.Core;

namespace InferenceMesh.Protocol;

/// <summary>Client → server: reserve a KV cache for <paramref name="SessionId"/> over <paramref name="Blocks"/> of <paramref name="ModelId"/>.</summary>
/// <param name="MaxLength">Positions the session may reach; the server reserves KV room for that many.</param>
/// <param name="KeepOutputs">
/// The server keeps the session's outputs (every position, counted in its KV budget) for the client to fetch with
/// <see cref="FetchOutputs"/>, and answers a step it pushes on to the next server with a <see cref="StepReceipt"/> instead of
/// the output itself. Optional on the wire: a server that does not read it sends every output, which a client takes as well.
/// </param>
public sealed record OpenSession(ulong RequestId, string SessionId, string ModelId, BlockRange Blocks, int MaxLength, bool KeepOutputs = false) : StageMessage
{
    public override string Kind => "open";
}
