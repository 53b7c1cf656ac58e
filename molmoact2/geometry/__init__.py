"""Geometry: cameras, back-projection, point clouds, kinematic paths.

Submodules are imported on demand (`from molmoact2.geometry.pointcloud import ...`); open3d and
friends stay out of `import molmoact2`.
"""
