# The tags to push, one per line. tools/stamp.sh replaces {KEY} with the
# workspace status value of KEY in a --stamp build, else with the default
# after ":-". These lines starting with # are dropped.
{STABLE_IMAGE_TAG:-dev}
