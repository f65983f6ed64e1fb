namespace InferenceMesh.Client;

/// <summary>How one check of a hop ended.</summary>
public enum CheckVerdict
{
    /// <summary>The validator's replay matched the hop's outputs within the tolerance.</summary>
    Passed,

    /// <summary>Two validators agreed with each other and not with the hop: the server lied and was banned.</summary>
    Convicted,

    /// <summary>The first validator disagreed, the second agreed with the hop: the first validator lied and was banned.</summary>
    ValidatorLied,

    /// <summary>A disagreement no second validator could settle: nobody convicted, the hop and the validators left out for the ordinary ban duration and the generation restarted.</summary>
    Unresolved,

    /// <summary>No independent server of those blocks was available.</summary>
    NoValidator,
}
