using System.Globalization;
using System.Text;

namespace Dispatcher.Containment;

/// <summary>
/// Where this process sits in the cgroup hierarchies mounted here, read from <c>/proc/self/mountinfo</c> and
/// <c>/proc/self/cgroup</c>: the directory of its own cgroup (or of a configured parent) in the cgroup v2 hierarchy and in
/// each cgroup v1 hierarchy by controller. Nothing is assumed about mount points: a pure v2 host, a hybrid one (v1 controllers
/// plus a v2 hierarchy at <c>/sys/fs/cgroup/unified</c>) and a container with its own cgroup namespace all look alike here.
/// </summary>
internal sealed class CgroupLayout
{
    private CgroupLayout(string? unified, IReadOnlyDictionary<string, string> v1, string? problem)
    {
        Unified = unified;
        V1 = v1;
        Problem = problem;
    }

    /// <summary>Gets the directory of the base cgroup in the v2 hierarchy, or <see langword="null"/> if there is none.</summary>
    public string? Unified { get; }

    /// <summary>Gets the directory of the base cgroup in each v1 hierarchy, by controller (<c>freezer</c>, <c>memory</c>, <c>pids</c>, <c>cpu</c>).</summary>
    public IReadOnlyDictionary<string, string> V1 { get; }

    /// <summary>Gets why the layout could not be read at all, or <see langword="null"/>.</summary>
    public string? Problem { get; }

    /// <summary>Reads this process's layout; with <paramref name="parent"/>, the base cgroup is that path in every hierarchy instead of the process's own.</summary>
    public static CgroupLayout Detect(string? parent = null)
    {
        if (!OperatingSystem.IsLinux())
        {
            return new(null, new Dictionary<string, string>(), "cgroups exist only on Linux");
        }

        try
        {
            return Parse(File.ReadAllText("/proc/self/mountinfo"), File.ReadAllText("/proc/self/cgroup"), parent);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return new(null, new Dictionary<string, string>(), $"cannot read /proc/self: {ex.Message}");
        }
    }

    /// <summary>Parses the two files (exposed for tests).</summary>
    internal static CgroupLayout Parse(string mountinfo, string selfCgroup, string? parent = null)
    {
        // mountinfo: "id parent major:minor root mountpoint options [optional fields] - fstype source superoptions"
        var mounts = new List<(string Root, string MountPoint, bool V2, HashSet<string> Controllers)>();
        foreach (var line in mountinfo.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = line.Split(' ');
            var separator = Array.IndexOf(fields, "-");
            if (separator < 6 || fields.Length < separator + 4)
            {
                continue;
            }

            var type = fields[separator + 1];
            if (type is not ("cgroup" or "cgroup2"))
            {
                continue;
            }

            var controllers = type == "cgroup"
                ? new HashSet<string>(fields[separator + 3].Split(','), StringComparer.Ordinal)
                : [];
            mounts.Add((Unescape(fields[3]), Unescape(fields[4]), type == "cgroup2", controllers));
        }

        string? unified = null;
        var v1 = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in selfCgroup.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            // "hierarchy-id:controller,list:path"; the v2 line is "0::path".
            var first = line.IndexOf(':', StringComparison.Ordinal);
            var second = first < 0 ? -1 : line.IndexOf(':', first + 1);
            if (second < 0)
            {
                continue;
            }

            var list = line[(first + 1)..second];
            var path = parent ?? line[(second + 1)..];
            if (list.Length == 0 && line.AsSpan(0, first).SequenceEqual("0"))
            {
                unified ??= mounts.Where(m => m.V2).Select(m => Locate(m.Root, m.MountPoint, path)).FirstOrDefault(d => d is not null);
                continue;
            }

            foreach (var controller in list.Split(','))
            {
                if (controller.Length == 0 || controller.StartsWith("name=", StringComparison.Ordinal) || v1.ContainsKey(controller))
                {
                    continue;
                }

                if (mounts.Where(m => !m.V2 && m.Controllers.Contains(controller)).Select(m => Locate(m.Root, m.MountPoint, path)).FirstOrDefault(d => d is not null) is { } dir)
                {
                    v1[controller] = dir;
                }
            }
        }

        return new(unified, v1, null);
    }

    /// <summary>Why a job cannot be tracked the way <paramref name="mode"/> asks for here, or <see langword="null"/> if it can (checked by creating a cgroup).</summary>
    public string? WhyUnavailable(ContainmentMode mode) => mode switch
    {
        ContainmentMode.Off => "containment is off",
        ContainmentMode.CgroupV2 => WhyNotWritable(Unified, "cgroup v2"),
        ContainmentMode.CgroupV1 => WhyNotWritable(V1.GetValueOrDefault("freezer"), "cgroup v1 freezer"),
        _ => WhyNotWritable(Unified, "cgroup v2") is { } v2 && WhyNotWritable(V1.GetValueOrDefault("freezer"), "cgroup v1 freezer") is { } v1
            ? $"{v2}; {v1}"
            : null,
    };

    private string? WhyNotWritable(string? directory, string what)
    {
        if (Problem is not null)
        {
            return Problem;
        }

        if (directory is null)
        {
            return $"no {what} hierarchy is mounted for this process";
        }

        if (!Directory.Exists(directory))
        {
            return $"the {what} cgroup {directory} does not exist";
        }

        var probe = Path.Combine(directory, $"dispatcher.probe.{Environment.ProcessId}.{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(probe);
            Directory.Delete(probe);
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return $"cannot create a {what} cgroup in {directory}: {ex.Message}";
        }
    }

    /// <summary>The directory of cgroup <paramref name="path"/> in a mount of its hierarchy whose root is <paramref name="root"/>, if that mount shows it.</summary>
    private static string? Locate(string root, string mountPoint, string path)
    {
        if (!path.StartsWith('/'))
        {
            return null;
        }

        string relative;
        if (root == "/")
        {
            relative = path;
        }
        else if (path == root || path.StartsWith(root + "/", StringComparison.Ordinal))
        {
            relative = path[root.Length..];
        }
        else
        {
            return null;
        }

        var dir = mountPoint.TrimEnd('/') + relative.TrimEnd('/');
        return dir.Length == 0 ? "/" : dir;
    }

    /// <summary>Undoes the octal escapes (<c>\040</c> for a space) of mountinfo fields.</summary>
    private static string Unescape(string field)
    {
        if (!field.Contains('\\', StringComparison.Ordinal))
        {
            return field;
        }

        var sb = new StringBuilder(field.Length);
        for (var i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length
                && int.TryParse(field.AsSpan(i + 1, 3), NumberStyles.None, CultureInfo.InvariantCulture, out _))
            {
                sb.Append((char)Convert.ToInt32(field.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
            {
                sb.Append(field[i]);
            }
        }

        return sb.ToString();
    }
}
