"""The Gradio workbench. It holds no model or math logic: every panel calls `molmoact2`."""
