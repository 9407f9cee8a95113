using System.Text;
using Dispatcher.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dispatcher.Tests.Storage;

/// <summary>
/// Issue 19, item 2: with fsync on, the journal is written into zeros written ahead of it and flushed with fdatasync. A crash
/// (kill -9) leaves that zero tail: loading reads it as the end of the journal, not as damage, and the next record is written
/// where the records end. A record a crash left unfinished stays a damaged line of its own.
/// </summary>
public sealed class JournalPreallocationTests
{
    private static JobEnqueuedRecord Enqueued(string id) => new(new JobRequest(id, ["true"]), DateTimeOffset.UtcNow);

    private static FileJobStore Store(string dir) => new(dir, flushToDisk: true, NullLogger.Instance) { PreallocateAboveFreeBytes = 0 };

    private static async Task<List<string>> LoadIdsAsync(string dir)
    {
        await using var store = Store(dir);
        var ids = new List<string>();
        await foreach (var record in store.LoadAsync())
        {
            ids.Add(((JobEnqueuedRecord)record).JobId);
        }

        return ids;
    }

    [Fact]
    public async Task WhileOpen_TheRecordsAreFollowedByZeros_AndACleanStopCutsThemOff()
    {
        var dir = Directory.CreateTempSubdirectory("prealloc-").FullName;
        var path = Path.Combine(dir, FileJobStore.FileName);
        var store = Store(dir);
        await using (store)
        {
            for (var i = 0; i < 10; i++)
            {
                await store.AppendAsync(Enqueued($"j{i}")).WaitAsync(TestDispatcher.Patience);
            }

            var bytes = ReadShared(path);
            var end = Array.FindLastIndex(bytes, b => b != 0) + 1;
            Assert.True(bytes.Length >= end + (store.PreallocationBytes / 2), $"{bytes.Length} bytes in the file, records end at {end}");
        }

        var after = File.ReadAllBytes(path);
        Assert.DoesNotContain((byte)0, after);
        Assert.Equal((byte)'\n', after[^1]);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => $"j{i}"), await LoadIdsAsync(dir));
    }

    [Fact]
    public async Task ZeroTailLeftByACrash_IsTheEnd_NotDamage_AndTheNextRecordFollowsTheLastOne()
    {
        var dir = Directory.CreateTempSubdirectory("prealloc-").FullName;
        var path = Path.Combine(dir, FileJobStore.FileName);
        await using (var store = Store(dir))
        {
            for (var i = 0; i < 5; i++)
            {
                await store.AppendAsync(Enqueued($"j{i}")).WaitAsync(TestDispatcher.Patience);
            }
        }

        // What kill -9 leaves: the records, then the zeros written ahead of them.
        using (var file = new FileStream(path, FileMode.Append))
        {
            file.Write(new byte[3 << 20]);
        }

        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"j{i}"), await LoadIdsAsync(dir));
        Assert.Empty(Directory.GetFiles(dir, FileJobStore.FileName + ".damaged-*"));

        await using (var store = Store(dir))
        {
            await foreach (var _ in store.LoadAsync())
            {
            }

            await store.AppendAsync(Enqueued("after")).WaitAsync(TestDispatcher.Patience);
        }

        Assert.Equal([.. Enumerable.Range(0, 5).Select(i => $"j{i}"), "after"], await LoadIdsAsync(dir));
        Assert.Empty(Directory.GetFiles(dir, FileJobStore.FileName + ".damaged-*"));
        Assert.DoesNotContain((byte)0, File.ReadAllBytes(path));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1 << 20)]
    public async Task RecordACrashLeftUnfinished_StaysADamagedLine_AndTheNextRecordIsKept(int zeroTail)
    {
        var dir = Directory.CreateTempSubdirectory("prealloc-").FullName;
        var path = Path.Combine(dir, FileJobStore.FileName);
        await using (var store = Store(dir))
        {
            for (var i = 0; i < 3; i++)
            {
                await store.AppendAsync(Enqueued($"j{i}")).WaitAsync(TestDispatcher.Patience);
            }
        }

        using (var file = new FileStream(path, FileMode.Append))
        {
            file.Write(Encoding.UTF8.GetBytes("0badc0de {\"Kind\":\"enqueued\",\"Id\":\"torn"));
            file.Write(new byte[zeroTail]);
        }

        await using (var store = Store(dir))
        {
            var loaded = new List<JobStoreRecord>();
            await foreach (var record in store.LoadAsync())
            {
                loaded.Add(record);
            }

            Assert.Equal(3, loaded.Count);
            await store.AppendAsync(Enqueued("next")).WaitAsync(TestDispatcher.Patience);
        }

        // Before: the next record was appended to the unfinished line and lost with it at the next load.
        Assert.Equal(["j0", "j1", "j2", "next"], await LoadIdsAsync(dir));
    }

    private static byte[] ReadShared(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var bytes = new byte[file.Length];
        file.ReadExactly(bytes);
        return bytes;
    }
}
