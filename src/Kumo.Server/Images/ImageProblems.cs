using Kumo.Core;
using Kumo.Server.Api;

namespace Kumo.Server.Images;

/// <summary>The problems an import is refused with: one readable sentence each, with a stable type.</summary>
internal static class ImageProblems
{
    public static ProblemException Rejected(string detail) =>
        new(422, ProblemTypes.ImageRejected, "The image was refused", detail);

    public static ProblemException TooLarge(string detail) =>
        new(413, ProblemTypes.ImageTooLarge, "The image is too large", detail);
}
