namespace InferenceMesh.Client;

/// <summary>How a client judged a published fraud report.</summary>
public enum FraudVerdict
{
    /// <summary>The accused's own signatures are on the evidence, and two validators re-ran it and agree with each other, not with the signed output: the accused is banned.</summary>
    Confirmed,
    /// <summary>The evidence is not signed by the accused for this model (forged, tampered or misattributed): rejected.</summary>
    Forged,
    /// <summary>A validator's re-run of the evidence matches the signed output: the report is false, rejected.</summary>
    RerunsHonestly,
    /// <summary>Too few validators, or two that disagree with each other: nobody is banned.</summary>
    Unresolved,
    /// <summary>The evidence could not be fetched or decoded: rejected.</summary>
    Unreadable,
}
