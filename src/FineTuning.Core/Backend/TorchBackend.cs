using System.Runtime.InteropServices;
using TorchSharp;

namespace FineTuning.Core.Backend;

/// <summary>
/// Checks once per process that TorchSharp's native backend loads, and turns the failure into one exception
/// that says why and what to install.
/// </summary>
public static class TorchBackend
{
    private static readonly Lazy<Exception?> LoadError = new(TryLoad, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Throws <see cref="TorchBackendUnavailableException"/> when the native backend cannot be loaded.</summary>
    /// <exception cref="TorchBackendUnavailableException">No backend package is referenced, or the system C++ runtime is too old.</exception>
    public static void EnsureAvailable()
    {
        if (LoadError.Value is { } error)
        {
            throw new TorchBackendUnavailableException(Explain(error, RuntimeInformation.IsOSPlatform(OSPlatform.Linux) && SystemLibstdcxxLacksGlibcxx3432()), error);
        }
    }

    private static Exception? TryLoad()
    {
        try
        {
            torch.InitializeDeviceType(DeviceType.CPU);
            return null;
        }
        catch (Exception e) when (e is TypeInitializationException or NotSupportedException or DllNotFoundException or InvalidOperationException)
        {
            return e;
        }
    }

    /// <summary>The message for a load failure: the C++ runtime requirement where that is the cause, else the backend packages.</summary>
    internal static string Explain(Exception error, bool systemLibstdcxxTooOld)
    {
        var detail = (error.InnerException ?? error).Message.Split('\n')[0].Trim();
        if (systemLibstdcxxTooOld)
        {
            return "TorchSharp's native library could not be loaded: it needs libstdc++ with GLIBCXX_3.4.32 (GCC 13 or later), "
                + "and this system's libstdc++.so.6 is older (as on Debian 12 and Ubuntu 22.04). Install a newer libstdc++, "
                + "or patch the copy of libLibTorchSharp.so your app loads with eng/torchsharp-compat.sh from the FineTuning.Core "
                + "repository (needs g++ and patchelf). TorchSharp said: " + detail;
        }

        return "TorchSharp's native backend could not be loaded. Reference a backend package in your application: "
            + "TorchSharp-cpu (or libtorch-cpu-linux-x64 / -win-x64 / -osx-arm64) for CPU, TorchSharp-cuda-linux or "
            + "TorchSharp-cuda-windows for NVIDIA GPUs. TorchSharp said: " + detail;
    }

    private static bool SystemLibstdcxxLacksGlibcxx3432()
    {
        string[] candidates = ["/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6"];
        var path = candidates.FirstOrDefault(File.Exists);
        if (path is null)
        {
            return false;
        }

        var needle = "GLIBCXX_3.4.32"u8.ToArray();
        var bytes = File.ReadAllBytes(path);
        return bytes.AsSpan().IndexOf(needle) < 0;
    }
}
