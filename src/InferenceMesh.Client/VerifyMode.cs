namespace InferenceMesh.Client;

/// <summary>How much a client checks that servers really ran their blocks (see <c>docs/VERIFICATION.md</c>).</summary>
public enum VerifyMode
{
    /// <summary>No commitments checked, no replays: trust every server.</summary>
    Off,

    /// <summary>
    /// Every step's signed commitment is checked against what arrived; at the end of each window of
    /// <see cref="MeshClientOptions.CheckWindow"/> positions (and at the session's end) each hop is replayed on an
    /// independent validator with probability <see cref="MeshClientOptions.CheckRate"/>. Text streams at once; a
    /// detection restarts the generation without the liar, so the returned text is honest.
    /// </summary>
    Sample,

    /// <summary>Every hop replayed at every window end, and text handed out only once the positions behind it are checked.</summary>
    Strict,
}
