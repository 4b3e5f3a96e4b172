using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Opd;

/// <summary>
/// A <see cref="SparseDelta"/> written into a model's weights by <see cref="SparseDelta.ApplyTo"/>. It keeps the
/// original entries so <see cref="Remove"/> restores them bit for bit (it does not subtract δ, which would not be exact).
/// </summary>
public sealed class AppliedSparseDelta
{
    private readonly List<(Tensor Parameter, Tensor Indices, Tensor Originals)> saved;

    internal AppliedSparseDelta(SparseDelta delta, List<(Tensor Parameter, Tensor Indices, Tensor Originals)> saved)
    {
        Delta = delta;
        this.saved = saved;
    }

    /// <summary>The applied delta.</summary>
    public SparseDelta Delta { get; }

    /// <summary>Whether <see cref="Remove"/> has run.</summary>
    public bool IsRemoved { get; private set; }

    /// <summary>Writes the saved original entries back (bit-exact) and frees them; removing twice does nothing.</summary>
    public void Remove()
    {
        if (IsRemoved)
        {
            return;
        }

        using (no_grad())
        {
            // Reverse order, so deltas applied one after another come off in the right order too.
            for (var i = saved.Count - 1; i >= 0; i--)
            {
                var (parameter, indices, originals) = saved[i];
                parameter.view(-1).index_copy_(0, indices, originals);
                indices.Dispose();
                originals.Dispose();
            }
        }

        saved.Clear();
        IsRemoved = true;
    }
}
