using FineTuning.Core.Models;
using TorchSharp;

namespace FineTuning.Cli.Commands;

/// <summary>Options several commands share: <c>--device</c> and <c>--dtype</c>.</summary>
internal static class CommonOptions
{
    public static torch.Device Device(CommandLine commandLine)
    {
        var text = commandLine.String("device") ?? "cpu";
        try
        {
            return torch.device(text);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException)
        {
            throw new UsageException($"Option --device expects cpu or cuda:N, got '{text}' ({e.Message}).");
        }
    }

    public static torch.ScalarType? DType(CommandLine commandLine)
    {
        var text = commandLine.String("dtype");
        try
        {
            return text is null ? null : ModelConfig.ParseDtype(text);
        }
        catch (ModelConfigException)
        {
            throw new UsageException($"Option --dtype expects float32, bfloat16 or float16, got '{text}'.");
        }
    }
}
