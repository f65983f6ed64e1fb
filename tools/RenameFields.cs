#:package Microsoft.Build.Locator@1.11.2
#:package Microsoft.CodeAnalysis.CSharp.Workspaces@5.0.0
#:package Microsoft.CodeAnalysis.Workspaces.MSBuild@5.0.0
#:property DisableMSBuildAssemblyCopyCheck=true
#:property ManagePackageVersionsCentrally=false

// Renames fields to the rule in docs/CONVENTIONS.md with Roslyn's Renamer (so every reference follows):
// const and static readonly fields PascalCase, other private/internal fields _camelCase.
// `dotnet format` cannot do this: its IDE1006 fixer does not support Fix All.
// Usage: dotnet run tools/RenameFields.cs -- src/X/X.csproj [tests/X.Tests/X.Tests.csproj ...]

using System.Text.RegularExpressions;
using Microsoft.Build.Locator;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.MSBuild;
using Microsoft.CodeAnalysis.Rename;
using Microsoft.CodeAnalysis.Text;

MSBuildLocator.RegisterDefaults();
foreach (var path in args) await RenameProject(Path.GetFullPath(path));

static async Task RenameProject(string path)
{
    using var workspace = MSBuildWorkspace.Create();
    var project = await workspace.OpenProjectAsync(path);
    var original = project.Solution;
    var solution = original;
    while (await RenameOne(solution, project.Id) is { } next) solution = next;
    foreach (var id in solution.GetChanges(original).GetProjectChanges().SelectMany(p => p.GetChangedDocuments()))
    {
        var text = (await solution.GetDocument(id)!.GetTextAsync()).ToString();
        solution = solution.WithDocumentText(id, SourceText.From(Regex.Replace(text, @"\bthis\._", "_")));
    }
    if (!workspace.TryApplyChanges(solution)) throw new InvalidOperationException($"could not write the changes to {path}");
}

static async Task<Solution?> RenameOne(Solution solution, ProjectId projectId)
{
    var compilation = await solution.GetProject(projectId)!.GetCompilationAsync()
        ?? throw new InvalidOperationException("no compilation");
    foreach (var type in AllTypes(compilation.Assembly.GlobalNamespace))
        foreach (var field in type.GetMembers().OfType<IFieldSymbol>())
        {
            if (field.IsImplicitlyDeclared || field.Locations.Any(l => !l.IsInSource || l.SourceTree!.FilePath.Contains("/obj/"))) continue;
            if (Expected(field) is not { } target || target == field.Name) continue;
            Console.WriteLine($"{type.ToDisplayString()}.{field.Name} -> {target}");
            return await Renamer.RenameSymbolAsync(solution, field, new SymbolRenameOptions(), target);
        }
    return null;
}

static string? Expected(IFieldSymbol field)
{
    var name = field.Name.TrimStart('_');
    if (name.Length == 0) return null;
    if (field.IsConst || (field.IsStatic && field.IsReadOnly)) return char.ToUpperInvariant(name[0]) + name[1..];
    if (field.DeclaredAccessibility is Accessibility.Private or Accessibility.Internal or Accessibility.ProtectedAndInternal)
        return "_" + char.ToLowerInvariant(name[0]) + name[1..];
    return null;
}

static IEnumerable<INamedTypeSymbol> AllTypes(INamespaceOrTypeSymbol container)
{
    foreach (var member in container.GetMembers())
    {
        if (member is INamespaceSymbol ns)
            foreach (var type in AllTypes(ns)) yield return type;
        else if (member is INamedTypeSymbol type)
        {
            yield return type;
            foreach (var nested in AllTypes(type)) yield return nested;
        }
    }
}
