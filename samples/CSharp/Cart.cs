namespace Sesame.Samples.CSharp;

/// <summary>One line of the cart: stored in the session as <c>{"sku":"...","qty":2}</c>.</summary>
public sealed record CartItem(string Sku, int Qty);

/// <summary>The cart, stored at the session path <c>cart</c>.</summary>
public sealed record Cart(IReadOnlyList<CartItem> Items)
{
    /// <summary>The cart of a visitor who has added nothing.</summary>
    public static Cart Empty { get; } = new([]);

    /// <summary>How many units in all.</summary>
    public int Count => Items.Sum(item => item.Qty);
}
