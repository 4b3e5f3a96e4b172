using FineTuning.Core.Backend;
using Xunit;

namespace FineTuning.Core.Tests.Backend;

public class TorchBackendTests
{
    [Fact]
    public void The_backend_loads_here()
    {
        TorchBackend.EnsureAvailable();
    }

    [Fact]
    public void A_missing_backend_package_is_explained_with_the_packages_to_reference()
    {
        var failure = new TypeInitializationException("TorchSharp.torch", new NotSupportedException("This application or script uses TorchSharp but doesn't contain a reference to libtorch-cpu-linux-x64"));
        var message = TorchBackend.Explain(failure, systemLibstdcxxTooOld: false);
        Assert.Contains("TorchSharp-cpu", message);
        Assert.Contains("TorchSharp-cuda-linux", message);
        Assert.Contains("doesn't contain a reference", message);
    }

    [Fact]
    public void An_old_system_libstdcxx_is_named_as_the_cause()
    {
        var failure = new TypeInitializationException("TorchSharp.torch", new NotSupportedException("failed to load"));
        var message = TorchBackend.Explain(failure, systemLibstdcxxTooOld: true);
        Assert.Contains("GLIBCXX_3.4.32", message);
        Assert.Contains("torchsharp-compat.sh", message);
    }
}
