using System.Text;
using Microsoft.ML.Tokenizers;

namespace FineTuning.Core.Tokenization;

/// <summary>A Microsoft.ML.Tokenizers normalizer applying a Unicode normalization form (Qwen2 uses NFC).</summary>
internal sealed class UnicodeFormNormalizer : Normalizer
{
    private readonly NormalizationForm _form;

    /// <summary>Creates the normalizer.</summary>
    public UnicodeFormNormalizer(NormalizationForm form) => _form = form;

    /// <inheritdoc />
    public override string Normalize(string original) => original.Normalize(_form);

    /// <inheritdoc />
    public override string Normalize(ReadOnlySpan<char> original) => original.ToString().Normalize(_form);
}
