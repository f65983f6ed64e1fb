namespace InferenceMesh.P2P.Identity;

/// <summary>
/// Identity key files: the libp2p <c>PrivateKey</c> protobuf bytes, created with mode 0600.
/// Loading refuses a file that group or others may read.
/// </summary>
public static class KeyFile
{
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode Wide = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>Writes <paramref name="key"/> to a new file with mode 0600; refuses to overwrite.</summary>
    public static void Save(string path, Ed25519KeyPair key)
    {
        var bytes = key.ExportPrivateKeyProtobuf();
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows()) options.UnixCreateMode = Private;
            using var fs = new FileStream(path, options);
            fs.Write(bytes);
        }
        catch (IOException e) when (File.Exists(path))
        {
            throw new P2PException(P2PErrorCode.KeyFile, $"key file {path} already exists", e);
        }
        finally
        {
            Array.Clear(bytes);
        }
    }

    /// <summary>Loads a key file; throws <see cref="P2PException"/> (KeyFile) if missing, too open or malformed.</summary>
    public static Ed25519KeyPair Load(string path)
    {
        if (!File.Exists(path))
            throw new P2PException(P2PErrorCode.KeyFile, $"key file {path} does not exist");
        if (!OperatingSystem.IsWindows())
        {
            var mode = File.GetUnixFileMode(path);
            if ((mode & Wide) != 0)
                throw new P2PException(P2PErrorCode.KeyFile,
                    $"key file {path} has mode {Convert.ToString((int)mode, 8)}; it must not be accessible by group or others (chmod 600)");
        }
        var info = new FileInfo(path);
        if (info.Length > Libp2pKeys.MaxKeyMessageLength)
            throw new P2PException(P2PErrorCode.KeyFile, $"key file {path} is {info.Length} bytes; a key file is at most {Libp2pKeys.MaxKeyMessageLength}");
        var bytes = File.ReadAllBytes(path);
        try
        {
            return Ed25519KeyPair.FromPrivateKeyProtobuf(bytes);
        }
        catch (P2PException e)
        {
            throw new P2PException(P2PErrorCode.KeyFile, $"key file {path} is not a libp2p private key: {e.Message}", e);
        }
        finally
        {
            Array.Clear(bytes);
        }
    }

    /// <summary>Loads the key at <paramref name="path"/>, or creates and saves a new one if the file does not exist.</summary>
    public static Ed25519KeyPair LoadOrCreate(string path)
    {
        if (File.Exists(path))
            return Load(path);
        var key = Ed25519KeyPair.Generate();
        Save(path, key);
        return key;
    }
}
