namespace FineTuning.Core.Strategies.Lora;

/// <summary>How <see cref="LoraStrategy.AddWeightedAdapter"/> combines adapters (PEFT's <c>combination_type</c>).</summary>
public enum LoraCombination
{
    /// <summary>
    /// <c>"linear"</c>: equal ranks required; A = Σ sign(wᵢsᵢ)·√|wᵢsᵢ|·Aᵢ and B = Σ √|wᵢsᵢ|·Bᵢ, with sᵢ each adapter's
    /// scaling (exact only for a single adapter, since cross terms appear, as in PEFT).
    /// </summary>
    Linear,

    /// <summary><c>"cat"</c>: A = [w₁s₁A₁; w₂s₂A₂; …], B = [B₁ B₂ …]; the new rank is the sum of the ranks, and ΔW = Σ wᵢsᵢBᵢAᵢ exactly.</summary>
    Cat,
}
