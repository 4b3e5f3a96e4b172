using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.AdapterLayers;

/// <summary>
/// One bottleneck adapter, laid out as AdapterHub's <c>Adapter</c> so parameter names are its own:
/// <c>adapter_down</c> is a Sequential of the down-projection (<c>adapter_down.0.weight</c> [d, hidden],
/// <c>adapter_down.0.bias</c>) and the activation (<c>adapter_down.1</c>), <c>adapter_up</c> the up-projection
/// (<c>adapter_up.weight</c> [hidden, d], <c>adapter_up.bias</c>).
/// </summary>
public sealed class BottleneckAdapter : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // field names are AdapterHub's module names
    private readonly Sequential adapter_down;
    private readonly Linear adapter_up;
    private readonly nn.Module<Tensor, Tensor> dropout;
#pragma warning restore IDE1006
    private readonly Linear down;

    /// <summary>Creates the adapter on a device and initialises it (unless the device is <c>meta</c>).</summary>
    /// <param name="hiddenSize">The model's hidden size.</param>
    /// <param name="bottleneckSize">d.</param>
    /// <param name="options">Activation, init, scaling, dropout and dtype.</param>
    /// <param name="device">Where the weights live.</param>
    /// <param name="generator">The init's random generator (on the device's type; the global one when <c>null</c>).</param>
    public BottleneckAdapter(int hiddenSize, int bottleneckSize, AdapterLayersOptions options, Device device, Generator? generator = null) : base(nameof(BottleneckAdapter))
    {
        ArgumentNullException.ThrowIfNull(options);
        HiddenSize = hiddenSize;
        BottleneckSize = bottleneckSize;
        Scaling = options.Scaling;
        down = nn.Linear(hiddenSize, bottleneckSize, hasBias: true, device: device, dtype: options.AdapterDType);
        adapter_down = nn.Sequential(("0", (nn.Module<Tensor, Tensor>)down), ("1", Activation(options.EffectiveNonLinearity)));
        adapter_up = nn.Linear(bottleneckSize, hiddenSize, hasBias: true, device: device, dtype: options.AdapterDType);
        dropout = options.Dropout > 0 ? nn.Dropout(options.Dropout) : nn.Identity();
        RegisterComponents();
        if (device.type != DeviceType.META)
        {
            Initialize(options.Init, generator);
        }
    }

    /// <summary>The model's hidden size.</summary>
    public int HiddenSize { get; }

    /// <summary>The bottleneck size d.</summary>
    public int BottleneckSize { get; }

    /// <summary>The factor on the up-projection's output.</summary>
    public double Scaling { get; }

    /// <summary>The down-projection, Linear(hidden → d).</summary>
    public Linear Down => down;

    /// <summary>The up-projection, Linear(d → hidden).</summary>
    public Linear Up => adapter_up;

    /// <summary>The adapter's contribution <c>dropout(up(act(down(x)))·scaling)</c>, in the adapter's dtype (the residual is added by the caller).</summary>
    /// <param name="input">The adapter input, [.., hidden], already in the adapter's dtype.</param>
    /// <returns>[.., hidden].</returns>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var up = adapter_up.call(adapter_down.call(input));
        return dropout.call(up * Scaling).MoveToOuterDisposeScope();
    }

    private static nn.Module<Tensor, Tensor> Activation(AdapterNonLinearity kind) => kind switch
    {
        AdapterNonLinearity.Relu => nn.ReLU(),
        AdapterNonLinearity.Swish => nn.SiLU(),
        AdapterNonLinearity.Gelu => nn.GELU(),
        AdapterNonLinearity.Tanh => nn.Tanh(),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown adapter non-linearity."),
    };

    private void Initialize(AdapterInit init, Generator? generator)
    {
        using var _ = no_grad();
        switch (init)
        {
            case AdapterInit.Identity:
                // kaiming_uniform_(a=√5): gain √(2/6), bound = √3·gain/√fan_in = 1/√fan_in.
                down.weight!.uniform_(-1 / Math.Sqrt(HiddenSize), 1 / Math.Sqrt(HiddenSize), generator);
                adapter_up.weight!.zero_();
                break;
            case AdapterInit.Bert:
                down.weight!.normal_(0, 0.02, generator);
                adapter_up.weight!.normal_(0, 0.02, generator);
                break;
            case AdapterInit.Houlsby:
                TruncatedNormal(down.weight!, 1e-2, -2e-2, 2e-2, generator);
                TruncatedNormal(adapter_up.weight!, 1e-2, -2e-2, 2e-2, generator);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(init), init, "Unknown adapter init.");
        }

        down.bias!.zero_();
        adapter_up.bias!.zero_();
    }

    /// <summary>PyTorch's <c>trunc_normal_(mean=0)</c>: inverse-CDF sampling of a normal restricted to [a, b].</summary>
    private static void TruncatedNormal(Tensor tensor, double std, double a, double b, Generator? generator)
    {
        static double Cdf(double x) => (1 + Erf(x / Math.Sqrt(2))) / 2;
        var low = Cdf(a / std);
        var high = Cdf(b / std);
        tensor.uniform_((2 * low) - 1, (2 * high) - 1, generator);
        tensor.erfinv_();
        tensor.mul_(std * Math.Sqrt(2));
        tensor.clamp_(a, b);
    }

    /// <summary>erf(x), computed by torch in float64.</summary>
    private static double Erf(double x)
    {
        using var value = tensor(x, dtype: ScalarType.Float64);
        using var result = value.erf();
        return result.item<double>();
    }
}
