using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Opd;

/// <summary>
/// Exact selection under a budget (opd.md §4.4). Elements: the objective Σ S over chosen elements is separable with
/// unit costs, so the best B eligible elements are optimal; with row quotas, every row first takes its best
/// min(q, its eligible count) entries (q = ⌊B / rows⌋) and the rest of the budget the best remaining entries, which is
/// optimal among sets meeting those per-row minimums. Units (tensors or layers): an exact 0/1 knapsack by dynamic
/// programming on costs rounded up to multiples of a quantum ⌈B / 2000⌉ (capacity rounded down), so every chosen set
/// fits the true budget and the result is the exact optimum of the quantised problem — of the true problem when the
/// quantum is 1 (budgets up to 2000) or divides every cost.
/// </summary>
internal static class OpdSelector
{
    /// <summary>The number of capacity steps of the knapsack.</summary>
    public const int KnapsackResolution = 2000;

    /// <summary>
    /// Chooses at most <paramref name="budget"/> entries of the groups (each a [rows, cols] score matrix where −∞ marks
    /// an entry that cannot be chosen; entries must be positive to be chosen).
    /// </summary>
    /// <returns>Per group, a Bool mask of the chosen entries.</returns>
    public static Tensor[] Elements(IReadOnlyList<Tensor> groups, long budget, bool rowQuotas)
    {
        using var scope = NewDisposeScope();
        var rows = groups.Sum(g => g.shape[0]);
        var quota = rowQuotas && rows > 0 ? budget / rows : 0;
        var chosen = new Tensor[groups.Count];
        var candidates = new Tensor[groups.Count];
        long forced = 0;
        for (var i = 0; i < groups.Count; i++)
        {
            var g = groups[i].masked_fill(groups[i].le(0), float.NegativeInfinity);
            var mask = zeros(g.shape, ScalarType.Bool, g.device);
            if (quota > 0)
            {
                var k = (int)Math.Min(quota, g.shape[1]);
                var (values, indices) = g.topk(k, dim: 1);
                mask.scatter_(1, indices, values.isfinite());
                forced += mask.sum().item<long>();
            }

            chosen[i] = mask;
            candidates[i] = g.masked_fill(mask, float.NegativeInfinity).flatten();
        }

        var flat = cat(candidates, 0);
        var remaining = Math.Min(budget - forced, flat.isfinite().sum().item<long>());
        if (remaining > 0)
        {
            var picked = zeros(flat.numel(), ScalarType.Bool, flat.device);
            picked.index_fill_(0, flat.topk((int)remaining).indexes, true);
            long offset = 0;
            for (var i = 0; i < groups.Count; i++)
            {
                var n = groups[i].numel();
                chosen[i] = chosen[i].logical_or(picked.narrow(0, offset, n).reshape(groups[i].shape));
                offset += n;
            }
        }

        return chosen.Select(c => c.MoveToOuterDisposeScope()).ToArray();
    }

    /// <summary>
    /// The exact 0/1 knapsack: chooses units maximising Σ value under Σ cost ≤ <paramref name="budget"/> (quantised as the
    /// class describes). Units with value ≤ 0 or cost 0 are never chosen. Ties keep the earlier, smaller solution.
    /// </summary>
    /// <returns>Which units are chosen, and the quantum used.</returns>
    public static (bool[] Chosen, long Quantum) Knapsack(IReadOnlyList<double> values, IReadOnlyList<long> costs, long budget)
    {
        var n = values.Count;
        var quantum = Math.Max(1, (budget + KnapsackResolution - 1) / KnapsackResolution);
        var capacity = (int)(budget / quantum);
        var best = new double[capacity + 1];
        var take = new bool[n, capacity + 1];
        for (var u = 0; u < n; u++)
        {
            if (!(values[u] > 0) || costs[u] <= 0)
            {
                continue;
            }

            var cost = (costs[u] + quantum - 1) / quantum;
            if (cost > capacity)
            {
                continue;
            }

            for (var c = capacity; c >= cost; c--)
            {
                var with = best[c - (int)cost] + values[u];
                if (with > best[c])
                {
                    best[c] = with;
                    take[u, c] = true;
                }
            }
        }

        var chosen = new bool[n];
        var at = capacity;
        for (var u = n - 1; u >= 0; u--)
        {
            if (take[u, at])
            {
                chosen[u] = true;
                at -= (int)((costs[u] + quantum - 1) / quantum);
            }
        }

        return (chosen, quantum);
    }
}
