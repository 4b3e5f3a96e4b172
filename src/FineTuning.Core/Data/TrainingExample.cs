namespace FineTuning.Core.Data;

/// <summary>
/// One line of a JSONL training file. The three shapes are <see cref="TextExample"/> (<c>{"text": …}</c>),
/// <see cref="PromptCompletionExample"/> (<c>{"prompt": …, "completion": …}</c>) and <see cref="ChatExample"/>
/// (<c>{"messages": [{"role": …, "content": …}]}</c>).
/// </summary>
public abstract record TrainingExample
{
    private protected TrainingExample()
    {
    }
}
