using System.Text;

namespace FineTuning.Core.Tests.Tokenization;

/// <summary>
/// Hand-encodes a SentencePiece ModelProto (sentencepiece_model.proto) in protobuf wire format:
/// ModelProto { 1: repeated SentencePiece pieces, 2: TrainerSpec, 3: NormalizerSpec },
/// SentencePiece { 1: piece, 2: score (float), 3: type (1 normal, 2 unknown, 3 control) },
/// TrainerSpec { 3: model_type (2 = BPE), 4: vocab_size, 40: unk_id, 41: bos_id, 42: eos_id },
/// NormalizerSpec { 1: name, 3: add_dummy_prefix, 4: remove_extra_whitespaces, 5: escape_whitespaces }.
/// </summary>
internal static class SentencePieceModelBuilder
{
    public const int Normal = 1;
    public const int Unknown = 2;
    public const int Control = 3;

    public static byte[] Build(IReadOnlyList<(string Piece, float Score, int Type)> pieces, string normalizerName = "identity", int modelType = 2)
    {
        var model = new MemoryStream();
        foreach (var (piece, score, type) in pieces)
        {
            var message = new MemoryStream();
            WriteString(message, 1, piece);
            WriteTag(message, 2, 5);
            message.Write(BitConverter.GetBytes(score));
            WriteVarintField(message, 3, (ulong)type);
            WriteBytes(model, 1, message.ToArray());
        }

        var trainer = new MemoryStream();
        WriteVarintField(trainer, 3, (ulong)modelType);
        WriteVarintField(trainer, 4, (ulong)pieces.Count);
        WriteVarintField(trainer, 40, 0);
        WriteVarintField(trainer, 41, 1);
        WriteVarintField(trainer, 42, 2);
        WriteBytes(model, 2, trainer.ToArray());

        var normalizer = new MemoryStream();
        WriteString(normalizer, 1, normalizerName);
        WriteVarintField(normalizer, 3, 1);
        WriteVarintField(normalizer, 4, 1);
        WriteVarintField(normalizer, 5, 1);
        WriteBytes(model, 3, normalizer.ToArray());
        return model.ToArray();
    }

    private static void WriteTag(Stream stream, int field, int wireType) => WriteVarint(stream, (ulong)((field << 3) | wireType));

    private static void WriteVarintField(Stream stream, int field, ulong value)
    {
        WriteTag(stream, field, 0);
        WriteVarint(stream, value);
    }

    private static void WriteString(Stream stream, int field, string value) => WriteBytes(stream, field, Encoding.UTF8.GetBytes(value));

    private static void WriteBytes(Stream stream, int field, byte[] value)
    {
        WriteTag(stream, field, 2);
        WriteVarint(stream, (ulong)value.Length);
        stream.Write(value);
    }

    private static void WriteVarint(Stream stream, ulong value)
    {
        while (value >= 0x80)
        {
            stream.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }

        stream.WriteByte((byte)value);
    }
}
