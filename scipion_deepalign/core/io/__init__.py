"""Reading and writing MRC files and RELION STAR files; see :mod:`.mrc` and :mod:`.star`."""
from .images import load_images, split_image_name, write_particles
from .mrc import read_mrc, read_mrc_header, read_mrc_stack, read_volume, write_mrc
from .star import (
    read_particles_star,
    read_regions_star,
    read_star_blocks,
    write_particles_star,
    write_regions_star,
    write_star_blocks,
)

__all__ = [
    "read_mrc", "read_mrc_header", "read_mrc_stack", "read_volume", "write_mrc",
    "read_particles_star", "write_particles_star", "read_star_blocks", "write_star_blocks",
    "load_images", "write_particles", "split_image_name",
    "write_regions_star", "read_regions_star",
]
