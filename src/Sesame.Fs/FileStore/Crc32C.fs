namespace Sesame

open System
open System.Buffers.Binary
open System.Numerics

/// CRC-32C (Castagnoli), through the processor's CRC instruction where there is one.
[<Sealed; AbstractClass>]
type internal Crc32C =

    /// Continues a running CRC (start from 0xFFFFFFFF, complement the end result).
    static member Update(crc: uint32, data: ReadOnlySpan<byte>) : uint32 =
        let mutable crc = crc
        let mutable i = 0
        while i + 8 <= data.Length do
            crc <- BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data.Slice i))
            i <- i + 8
        while i < data.Length do
            crc <- BitOperations.Crc32C(crc, data[i])
            i <- i + 1
        crc

    /// The checksum of a framed record: every byte of it except the checksum field itself.
    static member OfRecord(record: ReadOnlySpan<byte>) : uint32 =
        let crc = Crc32C.Update(0xFFFFFFFFu, record.Slice(0, 4))
        ~~~(Crc32C.Update(crc, record.Slice 8))
