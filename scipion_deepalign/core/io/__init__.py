"""Reading and writing MRC files and RELION STAR files; see :mod:`.mrc` and :mod:`.star`."""
from .images import (
    NonFiniteImagesError,
    ParticleImages,
    finite_particle_rows,
    join_image_name,
    load_images,
    load_particle_images,
    locate_stacks,
    split_image_name,
    write_particles,
)
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
    "load_images", "load_particle_images", "NonFiniteImagesError", "write_particles",
    "ParticleImages", "finite_particle_rows",
    "split_image_name", "join_image_name", "locate_stacks",
    "write_regions_star", "read_regions_star",
]
