"""
@article{JimenezMoreno2021,
title = "DeepAlign, a 3D alignment method based on regionalized deep learning for Cryo-EM",
journal = "Journal of Structural Biology",
volume = "213",
number = "2",
pages = "107712",
year = "2021",
issn = "1047-8477",
doi = "http://doi.org/10.1016/j.jsb.2021.107712",
author = "A. Jiménez-Moreno and D. Střelák and J. Filipovič and J.M. Carazo and C.O.S. Sorzano",
keywords = "Cryo-EM, 3D alignment, Angular assignment, Deep learning"
}

"""
