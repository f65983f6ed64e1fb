namespace InferenceMesh.Client;

/// <summary>Why a generation ended.</summary>
public enum FinishReason
{
    /// <summary>The model emitted its end-of-text token.</summary>
    Stop,

    /// <summary>The token budget (<c>MaxTokens</c>, <c>MaxPositions</c> or the model's context) ran out.</summary>
    Length,
}
