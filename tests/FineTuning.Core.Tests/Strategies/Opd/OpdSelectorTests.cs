using FineTuning.Core.Strategies.Opd;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.Opd;

/// <summary>
/// OPD's selection is the exact optimum of its surrogate: compared with brute force over every subset of small random
/// instances (opd.md §5.1.3).
/// </summary>
public sealed class OpdSelectorTests
{
    /// <summary>Small groups of scores with negatives, zeros and −∞ (core) entries: 16 entries over 6 rows.</summary>
    private static List<float[,]> Instance(Random random)
    {
        var shapes = new[] { (2, 3), (3, 2), (1, 4) };
        return shapes.Select(s =>
        {
            var g = new float[s.Item1, s.Item2];
            for (var r = 0; r < s.Item1; r++)
            {
                for (var c = 0; c < s.Item2; c++)
                {
                    var u = random.NextDouble();
                    g[r, c] = u < 0.15 ? float.NegativeInfinity : u < 0.3 ? -(float)random.NextDouble() : u < 0.35 ? 0f : (float)Math.Round(random.NextDouble() * 10, 3);
                }
            }

            return g;
        }).ToList();
    }

    private static (List<(int Row, float Score)> Entries, int Rows) Flatten(List<float[,]> groups)
    {
        var entries = new List<(int, float)>();
        var row = 0;
        foreach (var g in groups)
        {
            for (var r = 0; r < g.GetLength(0); r++, row++)
            {
                for (var c = 0; c < g.GetLength(1); c++)
                {
                    entries.Add((row, g[r, c]));
                }
            }
        }

        return (entries, row);
    }

    private static (double Sum, int Count, bool[] Chosen) RunSelector(List<float[,]> groups, long budget, bool quotas)
    {
        using var scope = NewDisposeScope();
        var tensors = groups.Select(g => tensor(g)).ToList();
        var masks = OpdSelector.Elements(tensors, budget, quotas);
        var chosen = masks.SelectMany(m => m.flatten().data<bool>().ToArray()).ToArray();
        var (entries, _) = Flatten(groups);
        return (entries.Where((_, i) => chosen[i]).Sum(e => (double)e.Score), chosen.Count(c => c), chosen);
    }

    [Fact]
    public void Element_top_B_is_the_brute_force_optimum_and_never_takes_core_or_non_positive_entries()
    {
        var random = new Random(11);
        for (var trial = 0; trial < 25; trial++)
        {
            var groups = Instance(random);
            var (entries, _) = Flatten(groups);
            var budget = random.Next(1, 8);
            var (sum, count, chosen) = RunSelector(groups, budget, quotas: false);

            double best = 0;
            for (var subset = 0; subset < 1 << entries.Count; subset++)
            {
                if (System.Numerics.BitOperations.PopCount((uint)subset) > budget)
                {
                    continue;
                }

                var value = entries.Where((_, i) => (subset & (1 << i)) != 0).Sum(e => (double)e.Score);
                best = Math.Max(best, value);
            }

            Assert.Equal(best, sum, 1e-4);
            Assert.True(count <= budget);
            Assert.All(entries.Where((_, i) => chosen[i]), e => Assert.True(e.Score > 0 && float.IsFinite(e.Score)));
            Assert.Equal(Math.Min(budget, entries.Count(e => e.Score > 0 && float.IsFinite(e.Score))), count);
        }
    }

    [Fact]
    public void Row_quotas_are_the_brute_force_optimum_among_sets_giving_each_row_its_minimum()
    {
        var random = new Random(12);
        for (var trial = 0; trial < 25; trial++)
        {
            var groups = Instance(random);
            var (entries, rows) = Flatten(groups);
            var budget = random.Next(6, 14); // 6 rows: quota 1 or 2
            var quota = budget / rows;
            var (sum, count, chosen) = RunSelector(groups, budget, quotas: true);
            var minimum = Enumerable.Range(0, rows).Select(r => Math.Min(quota, entries.Count(e => e.Row == r && e.Score > 0 && float.IsFinite(e.Score)))).ToArray();

            double best = double.NegativeInfinity;
            for (var subset = 0; subset < 1 << entries.Count; subset++)
            {
                var members = entries.Where((_, i) => (subset & (1 << i)) != 0).ToList();
                if (members.Count > budget || members.Any(e => !float.IsFinite(e.Score))
                    || Enumerable.Range(0, rows).Any(r => members.Count(e => e.Row == r && e.Score > 0) < minimum[r]))
                {
                    continue;
                }

                best = Math.Max(best, members.Sum(e => (double)e.Score));
            }

            Assert.Equal(best, sum, 1e-4);
            Assert.True(count <= budget);
            for (var r = 0; r < rows; r++)
            {
                Assert.True(entries.Where((e, i) => chosen[i] && e.Row == r).Count() >= minimum[r], $"trial {trial}, row {r}");
            }
        }
    }

    [Fact]
    public void Knapsack_is_the_brute_force_optimum_when_the_quantum_is_one()
    {
        var random = new Random(13);
        for (var trial = 0; trial < 60; trial++)
        {
            var n = random.Next(1, 13);
            var values = Enumerable.Range(0, n).Select(_ => Math.Round((random.NextDouble() * 20) - 5, 3)).ToArray();
            var costs = Enumerable.Range(0, n).Select(_ => (long)random.Next(0, 600)).ToArray();
            var budget = random.Next(1, 2001);
            var (chosen, quantum) = OpdSelector.Knapsack(values, costs, budget);
            Assert.Equal(1, quantum);

            double best = 0;
            for (var subset = 0; subset < 1 << n; subset++)
            {
                long cost = 0;
                double value = 0;
                for (var u = 0; u < n; u++)
                {
                    if ((subset & (1 << u)) != 0)
                    {
                        cost += costs[u];
                        value += values[u];
                    }
                }

                if (cost <= budget)
                {
                    best = Math.Max(best, value);
                }
            }

            Assert.Equal(best, Enumerable.Range(0, n).Where(u => chosen[u]).Sum(u => values[u]), 1e-9);
            Assert.True(Enumerable.Range(0, n).Where(u => chosen[u]).Sum(u => costs[u]) <= budget);
            Assert.DoesNotContain(Enumerable.Range(0, n), u => chosen[u] && (values[u] <= 0 || costs[u] == 0));
        }
    }

    [Fact]
    public void Knapsack_with_a_quantum_never_exceeds_the_true_budget()
    {
        // Budget 10 000 → quantum ⌈10 000 / 2000⌉ = 5; costs are rounded up to multiples of 5, so 3 units of cost
        // 3 334 (10 002 in total) cannot all be chosen although their quantised capacity would look close.
        var (chosen, quantum) = OpdSelector.Knapsack([1.0, 1.0, 1.0], [3334, 3334, 3334], 10_000);
        Assert.Equal(5, quantum);
        Assert.Equal(2, chosen.Count(c => c));
        var (all, _) = OpdSelector.Knapsack([1.0, 1.0, 1.0], [3330, 3330, 3330], 10_000);
        Assert.Equal(3, all.Count(c => c));
    }
}
