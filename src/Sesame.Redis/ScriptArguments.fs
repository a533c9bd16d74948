namespace Sesame.Redis

open StackExchange.Redis

/// <summary>
/// A script's ARGV as it is built: an array sized once for the values a call will add (RedisLayout.argumentCountOf), so
/// that a commit of many updates neither grows a list value by value nor copies it into the array it sends. Past its
/// capacity it grows as a list does; an array not filled is copied to its length.
/// </summary>
[<Sealed>]
type internal ScriptArguments(capacity: int) =
    let mutable values: RedisValue[] = Array.zeroCreate (max 4 capacity)
    let mutable count = 0

    /// How many values were added.
    member _.Count = count

    /// Adds a value at the end.
    member _.Add(value: RedisValue) =
        if count = values.Length then System.Array.Resize(&values, values.Length * 2)
        values[count] <- value
        count <- count + 1

    /// Sets a value added before (a count known only once what it counts is added).
    member _.Item
        with set (index: int) (value: RedisValue) =
            if index >= count then invalidArg (nameof index) "Only a value already added can be set."
            values[index] <- value

    /// The values added, as the array a call sends: the one built, when it is full.
    member _.ToArray() : RedisValue[] = if count = values.Length then values else values[.. count - 1]
