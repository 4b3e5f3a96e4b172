using FineTuning.Core.Models;

namespace FineTuning.Core.Strategies;

/// <summary>
/// A fine-tuning method: it decides which parameters of a <see cref="CausalLanguageModel"/> train, wraps or
/// inserts the modules it needs through the model's seams, and saves, loads, merges and removes itself.
/// </summary>
/// <remarks>
/// The life of a strategy: <see cref="Apply"/> (validate, freeze, wrap, insert) → the trainer trains
/// <see cref="TrainableParameters"/> → <see cref="Save"/> / <see cref="Load"/> in the method's own ecosystem
/// format → <see cref="MergeAndUnload"/> where the method allows it, or <see cref="Remove"/> to get the base
/// model back. A strategy is applied to one model at a time; it holds no reference to the trainer.
/// </remarks>
public interface IParameterStrategy
{
    /// <summary>The method's short name as the CLI spells it (<c>sft</c>, <c>lora</c>, <c>qlora</c>, <c>prefix</c>, <c>prompt</c>, <c>adapters</c>, <c>opd</c>).</summary>
    string Method { get; }

    /// <summary>The model the strategy is applied to, or <c>null</c> before <see cref="Apply"/> and after removal.</summary>
    CausalLanguageModel? Model { get; }

    /// <summary>
    /// Validates the options against the model, then freezes, wraps or inserts modules. Throws
    /// <see cref="InvalidOptionException"/> naming the option when the options do not fit the model
    /// (no module matches the targets, a layer index is out of range…), leaving the model untouched.
    /// </summary>
    /// <param name="model">The model to modify in place.</param>
    /// <param name="context">Tokenizer, task data and logger the method may need.</param>
    void Apply(CausalLanguageModel model, StrategyContext context);

    /// <summary>The parameters the trainer should optimise, with their full names, in a stable order.</summary>
    /// <returns>The trainable parameters.</returns>
    IReadOnlyList<NamedParameter> TrainableParameters();

    /// <summary>Whether <see cref="MergeAndUnload"/> can fold the method into plain base weights.</summary>
    bool SupportsMerge { get; }

    /// <summary>
    /// Folds what was learned into the base weights and removes the strategy's modules, leaving a plain model
    /// that can be saved as a Hugging Face folder. Throws <see cref="NotSupportedException"/> when
    /// <see cref="SupportsMerge"/> is false.
    /// </summary>
    void MergeAndUnload();

    /// <summary>
    /// Undoes <see cref="Apply"/>: removes inserted modules, puts the original ones back and restores the
    /// base parameters bit for bit (methods that train base weights in place document what they restore).
    /// </summary>
    void Remove();

    /// <summary>
    /// Writes what the method learned to a folder in its ecosystem's format (a PEFT adapter folder, a Hugging
    /// Face model folder…). Each file is written atomically.
    /// </summary>
    /// <param name="directory">The folder; created when missing.</param>
    void Save(string directory);

    /// <summary>Loads state written by <see cref="Save"/> (or by the ecosystem's own tools) into the applied strategy.</summary>
    /// <param name="directory">The folder.</param>
    void Load(string directory);
}
