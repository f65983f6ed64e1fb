using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace InferenceMesh.Core.Tests;

/// <summary>Every file under src/ holds at most one top-level public type and is named after it (docs/CONVENTIONS.md).</summary>
public sealed class SourceLayoutTests
{
    [Fact]
    public void EverySourceFileHoldsOnePublicTypeNamedLikeTheFile()
    {
        var root = RepositoryRoot();
        var files = Directory.EnumerateFiles(Path.Combine(root, "src"), "*.cs", SearchOption.AllDirectories)
            .Select(path => Path.GetRelativePath(root, path).Replace('\\', '/'))
            .Where(path => !path.Contains("/obj/") && !path.Contains("/bin/"))
            .ToList();
        Assert.NotEmpty(files);
        var problems = files.SelectMany(path => Problems(path, File.ReadAllText(Path.Combine(root, path)))).ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void TwoPublicTypesInOneFileAreReported()
    {
        var problems = Problems("src/X/Widget.cs", "namespace X;\npublic sealed class Widget { }\npublic enum WidgetKind { A }\n");
        Assert.Equal(["src/X/Widget.cs declares 2 public types: Widget, WidgetKind"], problems);
    }

    [Fact]
    public void APublicTypeInAFileNamedOtherwiseIsReported()
    {
        var problems = Problems("src/X/Widgets.cs", "namespace X { public record Widget(int Size); }");
        Assert.Equal(["src/X/Widgets.cs holds public type Widget: name the file Widget.cs"], problems);
    }

    [Fact]
    public void PartialPartsNamedTypeDotPartPassAndNonPartialOnesDoNot()
    {
        Assert.Empty(Problems("src/X/Widget.Drawing.cs", "namespace X;\npublic sealed partial class Widget { }\ninternal sealed class Helper { }\n"));
        Assert.Equal(
            ["src/X/Widget.Drawing.cs holds public type Widget: name the file Widget.cs"],
            Problems("src/X/Widget.Drawing.cs", "namespace X;\npublic sealed class Widget { }\n"));
    }

    private static List<string> Problems(string path, string source)
    {
        var unit = CSharpSyntaxTree.ParseText(source).GetCompilationUnitRoot();
        var types = TopLevelTypes(unit.Members)
            .Where(type => type.Modifiers.Any(SyntaxKind.PublicKeyword))
            .ToList();
        if (types.Count > 1)
            return [$"{path} declares {types.Count} public types: {string.Join(", ", types.Select(t => Name(t)))}"];
        if (types.Count == 0) return [];
        var parts = Path.GetFileNameWithoutExtension(path).Split('.');
        var partial = types[0].Modifiers.Any(SyntaxKind.PartialKeyword);
        var named = parts[0] == Name(types[0]) && (parts.Length == 1 || (parts.Length == 2 && partial));
        return named ? [] : [$"{path} holds public type {Name(types[0])}: name the file {Name(types[0])}.cs"];
    }

    private static IEnumerable<MemberDeclarationSyntax> TopLevelTypes(SyntaxList<MemberDeclarationSyntax> members) =>
        members.SelectMany(member => member switch
        {
            BaseNamespaceDeclarationSyntax ns => TopLevelTypes(ns.Members),
            BaseTypeDeclarationSyntax or DelegateDeclarationSyntax => [member],
            _ => [],
        });

    private static string Name(MemberDeclarationSyntax type) => type switch
    {
        BaseTypeDeclarationSyntax declaration => declaration.Identifier.Text,
        DelegateDeclarationSyntax declaration => declaration.Identifier.Text,
        _ => throw new ArgumentException($"not a type: {type.Kind()}", nameof(type)),
    };

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "InferenceMesh.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no InferenceMesh.sln above {AppContext.BaseDirectory}");
    }
}
