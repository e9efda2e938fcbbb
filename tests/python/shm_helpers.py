"""Helpers shared by the pytest files (not a test module)."""


def mapping_of(address):
    """The /proc/self/maps line that contains `address`, or ""."""
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= address < hi:
                return line.strip()
    return ""
