using Microsoft.Extensions.DependencyInjection;

namespace Sesame.ExampleStore;

/// <summary>How an app keeps its sessions in the <see cref="ExampleStore"/>: a store package's extension on Sesame's builder.</summary>
public static class ExampleStoreRegistration
{
    /// <summary>Keeps sessions in an <see cref="ExampleStore"/> on the app's <see cref="TimeProvider"/> (the system's if none is registered).</summary>
    /// <param name="sesame">What <c>services.AddSesame(...)</c> returned.</param>
    /// <returns>The same builder.</returns>
    public static SesameBuilder AddExampleStore(this SesameBuilder sesame) =>
        sesame.AddStore(services => new ExampleStore(services.GetService<TimeProvider>() ?? TimeProvider.System));
}
