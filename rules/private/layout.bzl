"""The layout directories that rules take as inputs: one check, used by oci_push and oci_artifact."""

IMAGE_LAYOUT = "an OCI image layout directory (like rules_oci's oci_image or oci_image_index)"
ARTIFACT_LAYOUT = "an OCI artifact layout directory (like oci_artifact's)"

def layout_dir(owner, attribute, target, kind = IMAGE_LAYOUT):
    """Returns the single output of `target`, a directory, or fails saying what was expected.

    Args:
        owner: The label of the rule asking, for the message.
        attribute: A string, the attribute `target` came from (`image`, `referrer`, ...).
        target: A Target: the value of that attribute.
        kind: A string, what the directory must be ("an OCI ... layout directory (...)").

    Returns:
        A File, a directory.
    """
    files = target[DefaultInfo].files.to_list()
    expected = "expected a target whose single output is " + kind
    if len(files) != 1:
        fail("%s: %s %s has %d outputs (%s); %s." % (
            owner,
            attribute,
            target.label,
            len(files),
            ", ".join([f.short_path for f in files[:5]]) + (", ..." if len(files) > 5 else ""),
            expected,
        ))
    if not files[0].is_directory:
        fail("%s: %s %s outputs the file %s, not a directory; %s." % (
            owner,
            attribute,
            target.label,
            files[0].short_path,
            expected,
        ))
    return files[0]
