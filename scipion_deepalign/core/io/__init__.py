"""Reading and writing MRC files and RELION STAR files: the one front door of the core's IO.

Import every public name from here (``from scipion_deepalign.core.io import read_particles_star``),
never from the modules behind it:

* :mod:`.mrc` -- MRC maps and stacks (mrcfile, validated, atomic writes);
* :mod:`.star_tables` -- generic STAR tables (emtable);
* :mod:`.star` -- RELION particle STAR files read (any 3.0/3.1+ layout);
* :mod:`.star_write` -- RELION 3.1 particle STAR files written, and images with their STAR file;
* :mod:`.star_optics` -- the RELION column names and optics rules reading and writing share;
* :mod:`.images` -- ``index@stack`` names: where the stacks are, loading the images;
* :mod:`.regions` -- ``regions.star`` of a model folder;
* :mod:`.parts` -- part I of N of a particle STAR, the part record and the checked merge;
* :mod:`.results` -- the other files the commands write and the protocols read back (JSON
  summaries, the consensus differences, the half maps' names);
* :mod:`.columns` -- the names of the STAR columns DeepAlign writes, and the 0-/1-based
  region border (imported as a module: ``from scipion_deepalign.core.io import columns``).

``index@stack`` names are split and joined by :func:`split_image_name` /
:func:`join_image_name` only (defined with :class:`~scipion_deepalign.core.particles.Particles`).
The modules import each other without a cycle: ``columns``, ``mrc``, ``star_optics`` and
``star_tables`` import no other module of the package's IO; ``images`` imports ``mrc``;
``regions`` imports ``columns`` and ``star_tables``; ``star`` imports ``images``, ``mrc``,
``star_optics`` and ``star_tables``; ``star_write`` imports those (not ``star``); ``parts``
imports ``columns``, ``images``, ``star``, ``star_tables`` and ``star_write``; ``results``
imports none of them.
"""
from ..particles import join_image_name, split_image_name
from . import columns
from .images import (
    NonFiniteImagesError,
    ParticleImages,
    finite_particle_rows,
    load_images,
    load_particle_images,
    locate_stacks,
    output_root,
    read_chunk,
    relocate_image_names,
    stack_path,
)
from .mrc import (
    read_mrc,
    read_mrc_header,
    read_mrc_stack,
    read_volume,
    write_mrc,
    write_mrc_stack_chunks,
)
from .parts import (
    DEFAULT_PART_SIZE,
    PART_BLOCK,
    PartRecord,
    check_part_set,
    concatenate_particles,
    count_parts,
    is_complete_part,
    merge_parts,
    names_digest,
    parse_part,
    part_path,
    part_record,
    part_rows,
    read_part_record,
    write_part_star,
)
from .regions import read_regions_star, write_regions_star
from .results import (
    CONSENSUS_OUTPUTS,
    half_map_paths,
    read_differences_csv,
    read_json,
    summary_path,
    write_differences_csv,
    write_fsc_json,
    write_json,
)
from .star import read_particles_star
from .star_tables import column_values, float_column, read_star_blocks, write_star_blocks
from .star_write import write_particles, write_particles_star

__all__ = [
    "columns",
    "read_mrc", "read_mrc_header", "read_mrc_stack", "read_volume", "write_mrc",
    "write_mrc_stack_chunks",
    "read_particles_star", "write_particles_star", "read_star_blocks", "write_star_blocks",
    "column_values", "float_column",
    "load_images", "load_particle_images", "NonFiniteImagesError", "write_particles",
    "ParticleImages", "finite_particle_rows", "read_chunk",
    "split_image_name", "join_image_name", "locate_stacks", "stack_path", "output_root",
    "relocate_image_names",
    "write_regions_star", "read_regions_star",
    "DEFAULT_PART_SIZE", "PART_BLOCK", "PartRecord", "parse_part", "count_parts", "part_rows",
    "names_digest", "part_record", "part_path", "write_part_star", "read_part_record",
    "is_complete_part", "check_part_set", "merge_parts", "concatenate_particles",
    "CONSENSUS_OUTPUTS", "write_differences_csv", "read_differences_csv", "half_map_paths",
    "summary_path", "write_json", "read_json", "write_fsc_json",
]
