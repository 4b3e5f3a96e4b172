// TorchSharp keeps process-wide state (default device and dtype, RNG, thread count): run tests one at a time.
[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]
