using FineTuning.Core.Tokenization;
using Xunit;

namespace FineTuning.Core.Tests.Samples;

public class WordMapSampleTests
{
    [Fact]
    public void Every_completion_follows_the_table()
    {
        foreach (var example in WordMap.Train.Concat(WordMap.Eval))
        {
            Assert.Equal(WordMap.Expected(example.Prompt), example.Completion);
        }
    }

    [Fact]
    public void Validation_prompts_are_unseen_in_training()
    {
        var train = WordMap.Train.Select(e => e.Prompt).ToHashSet();
        Assert.Equal(400, train.Count);
        Assert.Equal(64, WordMap.Eval.Select(e => e.Prompt).Distinct().Count());
        Assert.DoesNotContain(WordMap.Eval, e => train.Contains(e.Prompt));
    }

    [Fact]
    public void Every_word_is_one_gpt2_token_after_a_space()
    {
        var tokenizer = TokenizerLoader.Gpt2();
        foreach (var word in WordMap.Inputs.Concat(WordMap.Outputs))
        {
            Assert.Single(tokenizer.Encode(" " + word, addSpecialTokens: false));
        }
    }
}
