using FineTuning.Core.Data;
using FineTuning.Core.Tests.Tokenization;
using Xunit;

namespace FineTuning.Core.Tests.Data;

public sealed class JsonlDatasetTests
{
    [Fact]
    public void ReadsAllThreeShapesAndSkipsBlankLines()
    {
        const string jsonl = """
            {"text": "Once upon a time."}

            {"prompt": "2+2=", "completion": " 4", "id": 7}
               
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
            """;

        IReadOnlyList<TrainingExample> examples = JsonlDataset.Parse(new StringReader(jsonl), "data.jsonl");

        Assert.Equal(3, examples.Count);
        Assert.Equal(new TextExample("Once upon a time."), examples[0]);
        Assert.Equal(new PromptCompletionExample("2+2=", " 4"), examples[1]);
        ChatExample chat = Assert.IsType<ChatExample>(examples[2]);
        Assert.Equal(["system", "user", "assistant"], chat.Messages.Select(m => m.Role));
        Assert.Equal(["Be brief.", "Hi", "Hello"], chat.Messages.Select(m => m.Content));
    }

    [Theory]
    [InlineData("{\"text\": \"unterminated", "not valid JSON")]
    [InlineData("[1, 2, 3]", "instead of an object")]
    [InlineData("{\"input\": \"x\", \"output\": \"y\"}", "none of the fields")]
    [InlineData("{\"text\": 5}", "\"text\" must be a string")]
    [InlineData("{\"prompt\": \"x\"}", "\"completion\" is missing")]
    [InlineData("{\"prompt\": \"x\", \"completion\": null}", "\"completion\" must be a string")]
    [InlineData("{\"messages\": []}", "empty")]
    [InlineData("{\"messages\": \"hi\"}", "must be a list")]
    [InlineData("{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", "unknown role \"tool\"")]
    [InlineData("{\"messages\": [{\"role\": \"user\"}]}", "messages[0] needs a string \"content\"")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, 3]}", "messages[1] must be an object")]
    [InlineData("{\"text\": \"a\", \"prompt\": \"b\", \"completion\": \"c\"}", "more than one shape")]
    public void MalformedLineReportsFileLineAndExpectation(string badLine, string expectedProblem)
    {
        string jsonl = "{\"text\": \"fine\"}\n\n" + badLine + "\n{\"text\": \"after\"}\n";

        var error = Assert.Throws<JsonlFormatException>(() => JsonlDataset.Parse(new StringReader(jsonl), "train.jsonl"));

        Assert.Equal("train.jsonl", error.FilePath);
        Assert.Equal(3, error.LineNumber);
        Assert.Contains(expectedProblem, error.Message);
        Assert.StartsWith("train.jsonl, line 3:", error.Message);
    }

    [Fact]
    public void LoadReadsAFileAndReportsItsPath()
    {
        using var folder = new TempDirectory();
        string path = folder.File("data.jsonl");
        File.WriteAllText(path, "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"oops\": 1}\n");

        var error = Assert.Throws<JsonlFormatException>(() => JsonlDataset.Load(path));

        Assert.Equal(path, error.FilePath);
        Assert.Equal(3, error.LineNumber);

        File.WriteAllText(path, "{\"text\": \"a\"}\r\n{\"text\": \"b\"}\r\n");
        Assert.Equal(2, JsonlDataset.Load(path).Count);
        Assert.Throws<FileNotFoundException>(() => JsonlDataset.Load(folder.File("missing.jsonl")));
    }
}
