namespace Sesame

// The file store: filled in by the file-store work (issue 4).
