namespace Sesame.Samples.CSharp;

/// <summary>The sample's endpoints: node-sesame's examples with the dynamic facade, a cart with the typed one.</summary>
public static class SampleEndpoints
{
    /// <summary>Maps <c>GET /</c>, <c>GET /nested</c>, <c>GET /session</c>, the <c>/cart</c> endpoints, and login, logout
    /// and "your devices" (<see cref="AccountEndpoints"/>).</summary>
    public static IEndpointRouteBuilder MapSesameSamples(this IEndpointRouteBuilder app)
    {
        app.MapGet("/", (Func<HttpContext, Task<string>>)Counter);
        app.MapGet("/nested", Nested);
        app.MapGet("/session", (SesameSession session) => Results.Text(session.ToJsonString(), "application/json"));

        var cart = app.MapGroup("/cart");
        cart.MapGet("/", ShowCart);
        cart.MapPost("/items", AddToCart);
        cart.MapDelete("/items/{sku}", RemoveFromCart);
        cart.MapDelete("/", EmptyCart);

        app.MapAccount();
        return app;
    }

    /// <summary>node-sesame's counter: <c>req.session.times = (req.session.times || 0) + 1</c>.</summary>
    private static async Task<string> Counter(HttpContext context)
    {
        dynamic s = await context.GetDynamicSesameAsync();
        s.times = (s.times ?? 0) + 1;
        return $"{s.times} times!";
    }

    /// <summary>node-sesame's nested example: a deep change records one update, at <c>foo.bar.baz</c>.</summary>
    private static string Nested(SesameSession session)
    {
        dynamic s = session.Dynamic;
        s.times = (s.times ?? 0) + 1;
        s.foo ??= new { bar = new { baz = 1 } };
        s.foo.bar.baz *= 2;
        return $"{s.times} times! baz = {s.foo.bar.baz}";
    }

    private static Cart ShowCart(SesameSession session) => session.Get<Cart>("cart") ?? Cart.Empty;

    /// <summary>Adds units of an item: an increment of its quantity when it is in the cart, else a new line.</summary>
    private static IResult AddToCart(CartItem item, SesameSession session)
    {
        if (string.IsNullOrWhiteSpace(item.Sku) || item.Qty <= 0)
        {
            return Results.ValidationProblem(new Dictionary<string, string[]>
            {
                ["item"] = ["An item needs a sku and a positive qty."],
            });
        }

        // Read once: the answer is built from the same list, rather than reading the cart back after the change.
        var items = session.Get<List<CartItem>>("cart.items") ?? [];
        var line = items.FindIndex(existing => existing.Sku == item.Sku);
        if (line >= 0)
        {
            // Concurrent adds of one item add up: an increment, not a set of what this request computed.
            session.Increment($"cart.items[{line}].qty", item.Qty);
            items[line] = items[line] with { Qty = items[line].Qty + item.Qty };
        }
        else
        {
            // An append, not a set of index n: new lines that concurrent requests add all survive.
            session.Append("cart.items", item);
            items.Add(item);
        }

        return Results.Ok(new Cart(items));
    }

    private static IResult RemoveFromCart(string sku, SesameSession session)
    {
        var items = session.Get<List<CartItem>>("cart.items") ?? [];
        var line = items.FindIndex(existing => existing.Sku == sku);
        return line >= 0 && session.Remove($"cart.items[{line}]") ? Results.NoContent() : Results.NotFound();
    }

    private static IResult EmptyCart(SesameSession session)
    {
        session.Remove("cart");
        return Results.NoContent();
    }
}
